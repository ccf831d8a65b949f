"""Shared domain package of the Segmind image gateway (deployed as the Core layer)."""
