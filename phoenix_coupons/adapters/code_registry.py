"""The code registry: one document per code in use, `_id = "<tenant_id>:<code_norm>"`, so
"codes are unique per tenant (ignoring case)" is an `_id` and holds on a sharded cluster with
`_id` as the shard key. It replaces the (tenant_id, code_norm) unique index of coupons.

A code is claimed (insert; a duplicate `_id` means taken) before the coupon naming it is
inserted, then confirmed (`$unset unconfirmed`). A crash between the two leaves an
unconfirmed claim that `claims_sweep.sweep_claims` settles. Each claim counts in its code
space's kept count (`space:<tenant>:<code_space>`, the capacity check)."""

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pymongo import DeleteOne
from pymongo.errors import BulkWriteError

from phoenix_coupons.adapters import counter_keys
from phoenix_coupons.adapters.counters import MongoCounters
from phoenix_coupons.adapters.mongo import Doc, Mongo, duplicates_only, raise_unacknowledged
from phoenix_coupons.adapters.mongo_schema import CODES
from phoenix_coupons.domain.models import Coupon

UNCONFIRMED = "unconfirmed"


def claim_id(tenant_id: str, code_norm: str) -> str:
    return f"{tenant_id}:{code_norm}"


def split_id(code_id: str) -> tuple[str, str]:
    """(tenant_id, code_norm): a tenant id holds no `:`."""
    tenant_id, code_norm = code_id.split(":", 1)
    return tenant_id, code_norm


def claim_doc(coupon: Coupon, at: datetime, unconfirmed: bool = True) -> Doc:
    doc: Doc = {
        "_id": claim_id(coupon.tenant_id, coupon.code_norm),
        "coupon_id": coupon.id,
        "definition_id": coupon.definition_id,
        "code_space": coupon.code_space,
        "claimed_at": at,
    }
    if unconfirmed:
        doc[UNCONFIRMED] = at
    return doc


@dataclass
class Claimed:
    """`refused`: positions whose code another coupon holds; `new`: positions claimed now;
    the others held their claim already (an earlier attempt of the same coupon)."""

    refused: set[int] = field(default_factory=set)
    new: set[int] = field(default_factory=set)


class CodeRegistry:
    def __init__(self, mongo: Mongo) -> None:
        self._col = mongo.db[CODES.name]
        self._counters = MongoCounters(mongo)

    async def claim(self, coupons: Sequence[Coupon], at: datetime | None = None) -> Claimed:
        """Claim each coupon's code (unconfirmed); one unordered insert."""
        out = Claimed()
        if not coupons:
            return out
        now = at or datetime.now(UTC)
        docs = [claim_doc(c, now) for c in coupons]
        dup: list[int] = []
        try:
            await self._col.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            dup = duplicates_only(exc)
        out.new = set(range(len(coupons))) - set(dup)
        if dup:
            holders = await self.holders([docs[i]["_id"] for i in dup])
            for i in dup:
                # Held by this coupon: an earlier attempt's claim (kept, counted then).
                if holders.get(docs[i]["_id"]) != coupons[i].id:
                    out.refused.add(i)
        await self._count([coupons[i] for i in out.new], +1)
        return out

    async def holders(self, ids: Sequence[str]) -> dict[str, str]:
        """The coupon id holding each claimed code."""
        found: dict[str, str] = {}
        async for doc in self._col.find({"_id": {"$in": list(ids)}}, {"coupon_id": 1}):
            found[doc["_id"]] = doc["coupon_id"]
        return found

    async def confirm(self, coupons: Sequence[Coupon]) -> set[int]:
        """Confirm the claims of stored coupons; returns the positions whose claim is gone
        (a sweep released it meanwhile): the caller claims again or undoes."""
        if not coupons:
            return set()
        ids = [claim_id(c.tenant_id, c.code_norm) for c in coupons]
        result = await self._col.update_many(
            {"_id": {"$in": ids}, UNCONFIRMED: {"$exists": True}}, {"$unset": {UNCONFIRMED: ""}}
        )
        if result.matched_count == len(set(ids)):
            return set()
        holders = await self.holders(ids)
        return {i for i, c in enumerate(coupons) if holders.get(ids[i]) != c.id}

    async def release(self, coupons: Iterable[Coupon]) -> int:
        """Delete the claims these coupons hold (a claim another coupon holds stays)."""
        released = 0
        by_space: dict[tuple[str, str | None], list[Coupon]] = {}
        for c in coupons:
            by_space.setdefault((c.tenant_id, c.code_space), []).append(c)
        for (tenant_id, code_space), group in by_space.items():
            ops = [
                DeleteOne({"_id": claim_id(c.tenant_id, c.code_norm), "coupon_id": c.id})
                for c in group
            ]
            result = await self._col.bulk_write(ops, ordered=False)
            raise_unacknowledged(result.bulk_api_result)
            released += result.deleted_count
            if code_space is not None and result.deleted_count:
                await self._counters.add(
                    {counter_keys.space(tenant_id, code_space): -result.deleted_count}
                )
        return released

    async def taken(self, tenant_id: str, code_norms: Sequence[str]) -> set[str]:
        ids = [claim_id(tenant_id, c) for c in code_norms]
        found: set[str] = set()
        for start in range(0, len(ids), 1000):
            cursor = self._col.find({"_id": {"$in": ids[start : start + 1000]}}, {"_id": 1})
            found.update([split_id(d["_id"])[1] async for d in cursor])
        return found

    async def holder(self, tenant_id: str, code_norm: str) -> str | None:
        doc = await self._col.find_one({"_id": claim_id(tenant_id, code_norm)}, {"coupon_id": 1})
        return None if doc is None else str(doc["coupon_id"])

    async def _count(self, coupons: Sequence[Coupon], sign: int) -> None:
        spaces = Counter(
            counter_keys.space(c.tenant_id, c.code_space) for c in coupons if c.code_space
        )
        await self._counters.add({k: sign * n for k, n in spaces.items()})
