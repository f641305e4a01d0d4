"""The code registry: one document per code in use, `_id = "<tenant_id>:<code_norm>"`, so
"codes are unique per tenant (ignoring case)" is an `_id` and holds on a sharded cluster with
`_id` as the shard key. It replaces the (tenant_id, code_norm) unique index of coupons.

A code is claimed (insert; a duplicate `_id` means taken) before the coupon naming it is
inserted. A single write (a definition's shared code, an all-or-nothing bulk call) claims
it unconfirmed and confirms it after (`$unset unconfirmed`); a crash between the two leaves
an unconfirmed claim that `claims_sweep.sweep_claims` settles. A batch of coupons (the
worker's, random bulk codes) instead opens one `claim_batches` document naming its claims,
claims them confirmed and deletes the document once its coupons are in: one write per batch
instead of one per coupon. A batch a crash left open is settled by
`claims_sweep.sweep_claim_batches`; a writer that finds its batch taken by a sweep (it
stalled past the grace period) checks its claims again. Each claim counts in its code
space's kept count (`space:<tenant>:<code_space>`, the capacity check)."""

import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pymongo import DeleteOne
from pymongo.errors import BulkWriteError

from phoenix_coupons.adapters import counter_keys
from phoenix_coupons.adapters.counters import MongoCounters
from phoenix_coupons.adapters.mongo import Doc, Mongo, duplicates_only, raise_unacknowledged
from phoenix_coupons.adapters.mongo_schema import CLAIM_BATCHES, CODES
from phoenix_coupons.adapters.nx27017_compat import epoch_ms
from phoenix_coupons.domain.models import Coupon

UNCONFIRMED = "unconfirmed"


def claim_id(tenant_id: str, code_norm: str) -> str:
    return f"{tenant_id}:{code_norm}"


def split_id(code_id: str) -> tuple[str, str]:
    """(tenant_id, code_norm): a tenant id holds no `:`."""
    tenant_id, code_norm = code_id.split(":", 1)
    return tenant_id, code_norm


def claim_doc(coupon: Coupon, at: datetime, unconfirmed: bool = True) -> Doc:
    """`unconfirmed` holds the claim's time in epoch ms: the claims sweep compares it (a
    range over datetimes scans the collection on nx-27017: nx27017_compat.py)."""
    doc: Doc = {
        "_id": claim_id(coupon.tenant_id, coupon.code_norm),
        "coupon_id": coupon.id,
        "definition_id": coupon.definition_id,
        "code_space": coupon.code_space,
        "claimed_at": at,
    }
    if unconfirmed:
        doc[UNCONFIRMED] = epoch_ms(at)
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
        self._batches = mongo.db[CLAIM_BATCHES.name]
        self._counters = MongoCounters(mongo)

    async def claim(
        self, coupons: Sequence[Coupon], at: datetime | None = None, unconfirmed: bool = True
    ) -> Claimed:
        """Claim each coupon's code; one unordered insert. `unconfirmed=False`: an open batch
        (`open_batch`) or a stored coupon covers the claims."""
        out = Claimed()
        if not coupons:
            return out
        now = at or datetime.now(UTC)
        docs = [claim_doc(c, now, unconfirmed) for c in coupons]
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

    async def open_batch(self, coupons: Sequence[Coupon], at: datetime | None = None) -> str:
        """Record the claims a batch is about to make (before making them); its id."""
        batch_id = uuid.uuid4().hex
        await self._batches.insert_one(
            {
                "_id": batch_id,
                "claims": [claim_id(c.tenant_id, c.code_norm) for c in coupons],
                "coupons": [c.id for c in coupons],
                "at": epoch_ms(at or datetime.now(UTC)),  # compared by the sweep
            }
        )
        return batch_id

    async def close_batch(self, batch_id: str) -> bool:
        """The batch's coupons are in: False when a sweep took the batch over meanwhile
        (then its claims may have been released: the writer checks them)."""
        result = await self._batches.delete_one({"_id": batch_id})
        return result.deleted_count == 1

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
