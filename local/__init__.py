"""The local stack: moto in server mode for AWS, a fake Segmind, and an API Gateway emulator serving the real handlers."""
