"""Leases for coalescing: one owner per (tenant namespace, cache key) across Lambda invocations, with an expiry so a
crashed owner never blocks the others. A conditional put in DynamoDB (JobsTable)."""

from __future__ import annotations

from decimal import Decimal

from botocore.exceptions import ClientError

from segmind_proxy.adapters.aws_clients import DynamoTable, condition_failed, raising_outages
from segmind_proxy.domain.errors import Dependency


@raising_outages(Dependency.LEASES)
class LeaseStore(DynamoTable):
    def acquire(self, key: str, owner: str, seconds: float) -> bool:
        """An owner may take its own lease again: a redelivered v2 job (owner `job-<id>`) runs only once the job's
        own lease has passed, so its dead attempt's coalescing lease need not be waited out."""
        now = self._clock()
        try:
            self.table.put_item(
                Item={
                    "pk": f"LEASE#{key}",
                    "owner": owner,
                    "lease_until": Decimal(str(round(now + seconds, 3))),
                    "expires_at": int(now + seconds + 3600),  # TTL tidies up what nobody released
                },
                ConditionExpression="attribute_not_exists(pk) OR lease_until < :now OR #owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":now": Decimal(str(round(now, 3))), ":owner": owner},
            )
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def held(self, key: str) -> bool:
        """Whether someone holds an unexpired lease on the key."""
        item = self.table.get_item(Key={"pk": f"LEASE#{key}"}, ConsistentRead=True).get("Item")
        return bool(item) and float(item["lease_until"]) >= self._clock()

    def release(self, key: str, owner: str) -> None:
        try:
            self.table.delete_item(
                Key={"pk": f"LEASE#{key}"},
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": owner},
            )
        except ClientError as exc:
            if not condition_failed(exc):
                raise
