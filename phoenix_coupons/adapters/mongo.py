"""MongoDB connection and indexes (PyMongo's async API).

Documents stay flat and ids are strings: the embedded test server mishandles sub-document
`$push`, positional updates, partial indexes and UUID binaries, and we use none of them.
"""

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

Doc = dict[str, Any]


def aware(value: datetime | str | None) -> datetime | None:
    """A stored timestamp as an aware UTC datetime. The embedded test server turns datetimes
    written by a top-level `$set` into strings; MongoDB does not, and this reads both."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def epoch_ms(value: datetime) -> int:
    """Timestamps that queries compare (leases) are stored as integers: exact everywhere."""
    return int(value.timestamp() * 1000)


class Mongo:
    def __init__(self, uri: str, database: str, idempotency_ttl_seconds: int) -> None:
        self.client: AsyncMongoClient[Doc] = AsyncMongoClient(
            uri, tz_aware=True, uuidRepresentation="standard", connect=False
        )
        self.db: AsyncDatabase[Doc] = self.client[database]
        self._idempotency_ttl = idempotency_ttl_seconds

    @property
    def api_keys(self) -> AsyncCollection[Doc]:
        return self.db["api_keys"]

    @property
    def rewards(self) -> AsyncCollection[Doc]:
        return self.db["reward_items"]

    @property
    def definitions(self) -> AsyncCollection[Doc]:
        return self.db["coupon_definitions"]

    @property
    def coupons(self) -> AsyncCollection[Doc]:
        return self.db["coupons"]

    @property
    def redemptions(self) -> AsyncCollection[Doc]:
        return self.db["redemptions"]

    @property
    def usage_hints(self) -> AsyncCollection[Doc]:
        return self.db["usage_hints"]

    @property
    def announced_offsets(self) -> AsyncCollection[Doc]:
        return self.db["announced_offsets"]

    @property
    def idempotency(self) -> AsyncCollection[Doc]:
        return self.db["idempotency_keys"]

    async def ping(self) -> None:
        await self.client.admin.command("ping")

    async def ensure_indexes(self) -> None:
        await self.api_keys.create_indexes([IndexModel([("key_hash", ASCENDING)], unique=True)])
        await self.rewards.create_indexes(
            [IndexModel([("tenant_id", ASCENDING), ("created_at", DESCENDING)])]
        )
        await self.definitions.create_indexes(
            [
                IndexModel([("tenant_id", ASCENDING), ("status", ASCENDING)]),
                IndexModel([("reward_item_id", ASCENDING), ("status", ASCENDING)]),
                IndexModel([("auto_trigger", ASCENDING), ("status", ASCENDING)]),
            ]
        )
        # At most one coupon per issue key: the `_id` is derived from it (issue_keys.py).
        # Databases from before that had an index of their own on it: no longer kept up.
        for name, spec in (await self.coupons.index_information()).items():
            if [tuple(part) for part in spec["key"]] == [("issue_key", 1)]:
                await self.coupons.drop_index(name)  # by name: servers name indexes their way
        await self.coupons.create_indexes(
            [
                # Codes are unique within a tenant ignoring case: code_norm is the upper case form.
                IndexModel([("tenant_id", ASCENDING), ("code_norm", ASCENDING)], unique=True),
                IndexModel([("tenant_id", ASCENDING), ("code_space", ASCENDING)]),
                IndexModel([("definition_id", ASCENDING), ("user_id", ASCENDING)]),
                IndexModel([("publish_pending", ASCENDING), ("issued_at", ASCENDING)]),
                # A user's wallet, and the look-up of a dead attempt's coupons by their event.
                IndexModel([("tenant_id", ASCENDING), ("user_id", ASCENDING)]),
            ]
        )
        await self.redemptions.create_indexes(
            [
                # One active redemption per slot of a usage group: limits are exact.
                IndexModel([("slot", ASCENDING)], unique=True),
                IndexModel([("group", ASCENDING), ("state", ASCENDING)]),
                IndexModel([("coupon_id", ASCENDING), ("redeemed_at", DESCENDING)]),
                IndexModel([("publish_pending", ASCENDING), ("redeemed_at", ASCENDING)]),
                IndexModel([("rollback_publish_pending", ASCENDING), ("redeemed_at", ASCENDING)]),
            ]
        )
        await self.idempotency.create_indexes(
            [IndexModel([("created_at", ASCENDING)], expireAfterSeconds=self._idempotency_ttl)]
        )

    async def close(self) -> None:
        await self.client.close()
