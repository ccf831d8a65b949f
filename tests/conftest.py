"""Shared test setup: an environment that can never reach real AWS, set before any project module is imported."""

import os

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "segmind-proxy-test",
        "POWERTOOLS_METRICS_NAMESPACE": "SegmindProxyTest",
    }
)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)


def _share_one_botocore_loader() -> None:
    """A container makes one boto3 Session, once; the unit tests rebuild it for every test, and each new Session
    would parse the service models' JSON again (seconds per run). One loader, shared by every Session in this
    process, parses each model once."""
    from functools import cache

    import botocore.loaders
    import botocore.session

    shared = cache(botocore.loaders.create_loader)
    botocore.session.create_loader = shared  # type: ignore[assignment]


_share_one_botocore_loader()
