"""The issuance budgets in MongoDB: one kept count per definition with an issuance limit
(`counters`, `_id` `issued:<tenant>:<definition>`, counter_keys.py), reserved BEFORE its
coupons are stored by a conditional update that can never take it past the limit, and given
back for the coupons not stored. Exact across processes with no transaction: every grant is
one update filtered on the count it read (or on the room left), so concurrent writers never
hand out the same unit twice.

The document also holds the exhaustion mark (`exhausted`: the limit whose
`coupon.definition_exhausted` event was claimed; `state`: `exhausted:<limit>:<token>` of the
claim, the subject the outbox sweep checks, outbox.py)."""

import contextlib

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from phoenix_coupons.adapters import counter_keys
from phoenix_coupons.adapters.mongo import Doc, Mongo
from phoenix_coupons.adapters.mongo_schema import COUNTERS
from phoenix_coupons.domain.errors import Contended
from phoenix_coupons.services.ports import Reserved

# A compare-and-set lost to another writer is tried again on the count it read: each loss
# means another writer's grant went through, so a few hundred cover any real contention.
MAX_RACES = 500
_FIELDS = {"n": 1, "exhausted": 1}
# No limit announced yet. Written with the document, never left missing: nx-27017's `$ne`
# does not match a missing field (MongoDB's does; nx27017_compat.py).
NONE = 0


def _reserved(granted: int, doc: Doc | None) -> Reserved:
    if doc is None:
        return Reserved(granted, 0, None)
    mark = int(doc.get("exhausted") or NONE)
    return Reserved(granted, max(0, int(doc.get("n", 0))), None if mark == NONE else mark)


class MongoIssuanceBudgets:
    def __init__(self, mongo: Mongo) -> None:
        self._col = mongo.db[COUNTERS.name]

    async def reserve(
        self, tenant_id: str, definition_id: str, want: int, limit: int, partial: bool
    ) -> Reserved:
        """Take `want` units of `limit`, or as many as are left when `partial`, else none."""
        key = counter_keys.issued(tenant_id, definition_id)
        if want <= 0:
            return _reserved(0, await self._col.find_one({"_id": key}, _FIELDS))
        # The usual case, room for all of it: one update, no read.
        doc = await self._col.find_one_and_update(
            {"_id": key, "n": {"$lte": limit - want}},
            {"$inc": {"n": want}},
            projection=_FIELDS,
            return_document=ReturnDocument.AFTER,
        )
        if doc is not None:
            return _reserved(want, doc)
        for _ in range(MAX_RACES):
            doc = await self._col.find_one({"_id": key}, _FIELDS)
            if doc is None:
                with contextlib.suppress(DuplicateKeyError):  # never counted: start at 0
                    await self._col.insert_one({"_id": key, "n": 0, "exhausted": NONE})
                continue
            count = int(doc.get("n", 0))
            grant = min(want, limit - count)
            if grant <= 0 or (grant < want and not partial):
                return _reserved(0, doc)
            taken = await self._col.find_one_and_update(
                {"_id": key, "n": count},
                {"$inc": {"n": grant}},
                projection=_FIELDS,
                return_document=ReturnDocument.AFTER,
            )
            if taken is not None:
                return _reserved(grant, taken)
        raise Contended(f"issuance budget {key}: lost {MAX_RACES} races in a row")

    async def give_back(self, tenant_id: str, definition_id: str, amount: int) -> None:
        if amount > 0:
            key = counter_keys.issued(tenant_id, definition_id)
            await self._col.update_one({"_id": key}, {"$inc": {"n": -amount}})

    async def issued(self, tenant_id: str, definition_id: str) -> int:
        doc = await self._col.find_one(
            {"_id": counter_keys.issued(tenant_id, definition_id)}, {"n": 1}
        )
        return max(0, int(doc["n"])) if doc else 0

    async def count_from(self, tenant_id: str, definition_id: str, stored: int) -> None:
        """The definition's coupons are counted from now on: at least the `stored` ones."""
        await self._col.update_one(
            {"_id": counter_keys.issued(tenant_id, definition_id)},
            {"$max": {"n": stored}, "$setOnInsert": {"exhausted": NONE}},
            upsert=True,
        )

    async def mark_exhausted(
        self, tenant_id: str, definition_id: str, limit: int, state: str
    ) -> bool:
        """Claim the announcement of `limit` being reached: True for the one claim that
        sets it (a later claim of the same limit finds it set)."""
        result = await self._col.update_one(
            {"_id": counter_keys.issued(tenant_id, definition_id), "exhausted": {"$ne": limit}},
            {"$set": {"exhausted": limit, "state": state}},
        )
        return result.modified_count == 1
