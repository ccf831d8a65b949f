"""How the fakes fail: as the adapters do, so a flow handles a fake's outage as a real one. An adapter turns every
AWS error it does not answer itself into `Outage(dependency)`, the AWS error kept as its cause."""

from __future__ import annotations

from botocore.exceptions import ClientError, EndpointConnectionError

from segmind_proxy.domain.errors import Dependency, Outage


def outage(dependency: Dependency) -> Outage:
    """The service behind `dependency` cannot be reached."""
    error = Outage(dependency)
    error.__cause__ = EndpointConnectionError(endpoint_url=f"https://{dependency.value}.fake")
    return error


def conditional_check_failed(operation: str, dependency: Dependency = Dependency.JOB_STORE) -> Outage:
    """A conditional write refused where the adapter does not answer it itself (a job created twice): the adapter
    lets it out as an outage."""
    error = Outage(dependency)
    error.__cause__ = ClientError(
        {"Error": {"Code": "ConditionalCheckFailedException", "Message": "The conditional request failed"}}, operation
    )
    return error


def missing_object(key: str) -> Outage:
    """An object of a set gone from under a read that found the set's first (S3's NoSuchKey, as an outage)."""
    error = Outage(Dependency.STORAGE)
    error.__cause__ = ClientError({"Error": {"Code": "NoSuchKey", "Message": f"No such key: {key}"}}, "GetObject")
    return error


class Breakable:
    """Operations named in `unreachable(...)` raise `outage(dependency)` until `recover()`."""

    dependency = Dependency.STORAGE

    def __init__(self) -> None:
        self.down: set[str] = set()

    def unreachable(self, *operations: str) -> None:
        self.down.update(operations)

    def recover(self) -> None:
        self.down.clear()

    def _may_fail(self, operation: str) -> None:
        if operation in self.down:
            raise outage(self.dependency)
