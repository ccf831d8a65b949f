"""How the fakes fail: with the errors the adapters let through, so a flow handles a fake's outage as a real one."""

from __future__ import annotations

from botocore.exceptions import ClientError, EndpointConnectionError


def outage(service: str = "aws") -> Exception:
    """The service cannot be reached (what every AWS adapter raises then)."""
    return EndpointConnectionError(endpoint_url=f"https://{service}.fake")


def conditional_check_failed(operation: str) -> Exception:
    """A conditional write refused, where the adapter lets DynamoDB's answer through (a job created twice)."""
    return ClientError(
        {"Error": {"Code": "ConditionalCheckFailedException", "Message": "The conditional request failed"}}, operation
    )


def missing_object(key: str) -> Exception:
    return ClientError({"Error": {"Code": "NoSuchKey", "Message": f"No such key: {key}"}}, "GetObject")


class Breakable:
    """Operations named in `unreachable(...)` raise `outage()` until `recover()`."""

    service = "aws"

    def __init__(self) -> None:
        self.down: set[str] = set()

    def unreachable(self, *operations: str) -> None:
        self.down.update(operations)

    def recover(self) -> None:
        self.down.clear()

    def _may_fail(self, operation: str) -> None:
        if operation in self.down:
            raise outage(self.service)
