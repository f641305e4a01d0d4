"""Coupons in MongoDB, read and written by `_id`, derived from the issue key
(`issue_keys.coupon_id`): one coupon per issue key, and issuance is idempotent. Codes are
unique per tenant through the code registry (code_registry.py): a coupon's code is claimed
before the coupon is inserted and confirmed after, so a crash between the two leaves a claim
the sweep settles, never a coupon without its unique code. No multi-document transactions.

A coupon's document holds more than the domain's `Coupon`: the inbound record that issued it
(`trigger_record`, "topic:partition:offset", read by the worker's redelivery rules) and
its list keys (`by_definition`, `by_user`: list_keys.py). Kept counts (`codes:`, `wallet:`)
change next to each insert and delete. Its `coupon.issued` event waits in the outbox
(outbox.py), not on the coupon."""

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError

from phoenix_coupons.adapters import counter_keys, list_keys
from phoenix_coupons.adapters.code_registry import CodeRegistry
from phoenix_coupons.adapters.counters import MongoCounters
from phoenix_coupons.adapters.mongo import Doc, Mongo, duplicates_only
from phoenix_coupons.adapters.nx27017_compat import aware, epoch_ms
from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.delivery import EventRef, RecordId
from phoenix_coupons.domain.errors import DuplicateCodes
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.services.ports import Page, StoredCoupon

# The expiry schedule's fields (expiry_schedule.py): the next step's time (epoch ms; absent
# when none), the steps sent ("<step>:<attempt>"), the scheduler attempt holding the coupon.
DUE, STEPS, CLAIM = "expiry_due", "expiry_steps", "expiry_claim"
IN_CHUNK = 1000  # keep `$in` lists and batches a reasonable size
BY_DEFINITION, BY_USER = "by_definition", "by_user"  # list keys (list_keys.py)

_FIELDS = {f.name for f in fields(Coupon)}
# `expiry_due` is stored as epoch ms, and only when set (expiry_schedule.py).
_STORED = tuple(f.name for f in fields(Coupon) if f.name not in ("id", DUE))


def to_doc(coupon: Coupon, record: RecordId | None = None) -> Doc:
    """`record`: the inbound record whose batch stores an event coupon."""
    # Every field is a scalar: a shallow copy (dataclasses.asdict deep-copies each value, and
    # cost the worker ~80 us per coupon).
    doc: Doc = {"_id": coupon.id}
    for name in _STORED:
        doc[name] = getattr(coupon, name)
    doc["trigger_record"] = (
        None if record is None else f"{record.topic}:{record.partition}:{record.offset}"
    )
    doc.update(list_fields(coupon))
    doc.update(due_field(coupon.expiry_due))
    return doc


def due_field(due: datetime | None) -> Doc:
    """A new coupon's schedule field: none without a due time (sparse in intent)."""
    return {} if due is None else {DUE: epoch_ms(due)}


def from_ms(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(int(value) / 1000, UTC)


def definition_prefix(tenant_id: str, definition_id: str) -> str:
    return list_keys.key(tenant_id, definition_id)


def user_prefix(tenant_id: str, user_id: str) -> str:
    return list_keys.key(tenant_id, list_keys.user_digest(user_id))


def list_fields(coupon: Coupon) -> Doc:
    """The list keys of a coupon: a definition's codes; a wallet (coupons of a user)."""
    tail = list_keys.tail(coupon.issued_at, coupon.id)
    doc: Doc = {
        BY_DEFINITION: list_keys.key(
            definition_prefix(coupon.tenant_id, coupon.definition_id), tail
        )
    }
    if coupon.user_id is not None:
        doc[BY_USER] = list_keys.key(user_prefix(coupon.tenant_id, coupon.user_id), tail)
    return doc


def counted(coupons: Iterable[Coupon], sign: int) -> dict[str, int]:
    """The kept counts a set of coupons changes: their definitions'. (A wallet's total is
    counted in its user's list-key range: `wallet`.)"""
    counts: Counter[str] = Counter()
    for c in coupons:
        counts[counter_keys.codes(c.tenant_id, c.definition_id)] += sign
    return dict(counts)


def from_doc(doc: Doc) -> Coupon:
    data = {k: v for k, v in doc.items() if k in _FIELDS}
    data["revoked_at"] = aware(data.get("revoked_at"))
    data["valid_until"] = aware(data.get("valid_until"))
    data[DUE] = from_ms(data.get(DUE))
    return Coupon(id=doc["_id"], **data)


def stored_from_doc(doc: Doc) -> StoredCoupon:
    record = doc.get("trigger_record")
    if not record:
        return StoredCoupon(from_doc(doc), None)
    topic, partition, offset = record.rsplit(":", 2)
    return StoredCoupon(from_doc(doc), RecordId(topic, int(partition), int(offset)))


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), IN_CHUNK):
        yield items[start : start + IN_CHUNK]


class MongoCouponRepo:
    def __init__(self, mongo: Mongo) -> None:
        self._mongo = mongo
        self._col = mongo.coupons
        self.codes = CodeRegistry(mongo)
        self._counters = MongoCounters(mongo)

    async def taken(self, tenant_id: str, code_norms: Sequence[str]) -> set[str]:
        """Which of `code_norms` are claimed in the tenant."""
        return await self.codes.taken(tenant_id, code_norms)

    async def count_in_space(self, tenant_id: str, code_space: str) -> int:
        """Claims in the code space: a kept count, one read by `_id`."""
        return await self._counters.get(counter_keys.space(tenant_id, code_space))

    async def insert_unordered(
        self, coupons: Sequence[Coupon], records: Mapping[str, RecordId] | None = None
    ) -> list[int]:
        """Insert what can be inserted; return the positions refused as duplicates (a code
        another coupon holds, or an issue key stored before). Raises when the write concern
        was not met (`raise_unacknowledged`): nothing counts as stored.
        `records`: event coupons' inbound records, by issue key."""
        failed: list[int] = []
        origin = (records or {}).get
        for start in range(0, len(coupons), IN_CHUNK):
            batch = coupons[start : start + IN_CHUNK]
            batch_id = await self.codes.open_batch(batch)
            claimed = await self.codes.claim(batch, unconfirmed=False)
            todo = [i for i in range(len(batch)) if i not in claimed.refused]
            refused = set(claimed.refused)
            try:
                docs = [to_doc(batch[i], origin(batch[i].issue_key)) for i in todo]
                if docs:
                    await self._col.insert_many(docs, ordered=False)
            except BulkWriteError as exc:
                refused.update(todo[j] for j in duplicates_only(exc))
            stored = [batch[i] for i in todo if i not in refused]
            twins = [batch[i] for i in todo if i in refused]
            await self._release_unstored(twins)
            if await self.codes.close_batch(batch_id):
                # Claims an earlier attempt left unconfirmed (a crash) are this coupon's.
                kept = [batch[i] for i in todo if i not in refused and i not in claimed.new]
                lost = await self._confirm(kept) if kept else []
            else:  # a sweep took the batch over: it may have released claims
                lost = await self._confirm(stored)
            position = {c.id: i for i, c in enumerate(batch)}
            refused.update(position[c.id] for c in lost)
            await self._counters.add(counted([c for c in stored if c not in lost], +1))
            failed += [start + i for i in sorted(refused)]
        return failed

    async def insert_atomic(self, coupons: Sequence[Coupon]) -> None:
        """All or nothing, without a transaction: claim every code, insert every coupon,
        confirm; on any refusal undo what this call wrote and raise DuplicateCodes."""
        await self.insert_unconfirmed(coupons)
        if await self._confirm(coupons):
            await self.undo(coupons)
            raise DuplicateCodes("a claim was released before its coupon was confirmed")
        await self._counters.add(counted(coupons, +1))

    async def insert_unconfirmed(self, coupons: Sequence[Coupon]) -> None:
        """Claim and insert all of `coupons` (claims left unconfirmed: the caller confirms
        once what names them is written too), or nothing and DuplicateCodes."""
        ids = {c.id for c in coupons}
        codes = {(c.tenant_id, c.code_norm) for c in coupons}
        if len(ids) < len(coupons) or len(codes) < len(coupons):
            raise DuplicateCodes("duplicate key within the batch")
        claimed = await self.codes.claim(coupons)
        if claimed.refused:
            await self.codes.release(coupons[i] for i in claimed.new)
            raise DuplicateCodes(f"{len(claimed.refused)} code(s) taken")
        try:
            await self._col.insert_many([to_doc(c) for c in coupons], ordered=False)
        except BulkWriteError as exc:
            refused = set(duplicates_only(exc))
            written = [c for i, c in enumerate(coupons) if i not in refused]
            await self._col.delete_many({"_id": {"$in": [c.id for c in written]}})
            await self.codes.release(written)
            await self._release_unstored([coupons[i] for i in refused])
            raise DuplicateCodes(f"{len(refused)} issue key(s) stored before") from exc

    async def confirm(self, coupons: Sequence[Coupon], count: bool = True) -> bool:
        """Confirm the claims of coupons `insert_unconfirmed` stored and count them; False
        (nothing counted) when a claim was released meanwhile."""
        if await self._confirm(coupons):
            return False
        if count:
            await self._counters.add(counted(coupons, +1))
        return True

    async def replace_row(self, doc: Doc) -> Coupon | None:
        """Write a coupon's row whole (upsert); returns the row it replaced."""
        before = await self._col.find_one_and_replace(
            {"_id": doc["_id"]}, doc, upsert=True, return_document=ReturnDocument.BEFORE
        )
        return None if before is None else from_doc(before)

    async def undo(self, coupons: Sequence[Coupon]) -> None:
        """Remove coupons `insert_unconfirmed` stored, and their claims (not yet counted)."""
        await self._col.delete_many({"_id": {"$in": [c.id for c in coupons]}})
        await self.codes.release(coupons)

    async def _confirm(self, coupons: Sequence[Coupon]) -> list[Coupon]:
        """Confirm stored coupons' claims. A claim a sweep released meanwhile (a write that
        stalled past the grace period) is claimed again; when another coupon took the code
        then, this coupon goes: the coupons returned were removed."""
        gone = await self.codes.confirm(coupons)
        if not gone:
            return []
        again = [coupons[i] for i in sorted(gone)]
        claimed = await self.codes.claim(again)
        lost = [again[i] for i in sorted(claimed.refused)]
        if lost:
            await self._col.delete_many({"_id": {"$in": [c.id for c in lost]}})
        await self.codes.confirm([c for c in again if c not in lost])
        return lost

    async def _release_unstored(self, coupons: Sequence[Coupon]) -> None:
        """Release the claims of coupons refused on their issue key, unless the coupon
        stored under that key names the same code (the claim is its)."""
        if not coupons:
            return
        stored = {
            d["_id"]: d.get("code_norm")
            async for d in self._col.find(
                {"_id": {"$in": [c.id for c in coupons]}}, {"code_norm": 1}
            )
        }
        await self.codes.release(c for c in coupons if stored.get(c.id) != c.code_norm)

    async def by_issue_keys(self, keys: Sequence[str]) -> dict[str, Coupon]:
        return {
            key: stored.coupon for key, stored in (await self.stored_by_issue_keys(keys)).items()
        }

    async def stored_by_issue_keys(self, keys: Sequence[str]) -> dict[str, StoredCoupon]:
        found: dict[str, StoredCoupon] = {}
        for chunk in _chunks(keys):
            ids = [issue_keys.coupon_id(key) for key in chunk]
            async for doc in self._col.find({"_id": {"$in": ids}}):
                found[doc["issue_key"]] = stored_from_doc(doc)
        return found

    async def for_trigger_events(self, events: Sequence[EventRef]) -> list[StoredCoupon]:
        """Coupons issued for these inbound events: each user's wallet range (a user holds
        few coupons), the event id filtered on."""
        found: list[StoredCoupon] = []
        by_user: dict[tuple[str, str], set[str]] = {}
        for e in events:
            by_user.setdefault((e.tenant_id, e.user_id), set()).add(e.event_id)
        for (tenant_id, user_id), event_ids in by_user.items():
            start = user_prefix(tenant_id, user_id) + list_keys.SEP
            query = {
                BY_USER: {"$gte": start, "$lt": start + list_keys.END},
                "trigger_event_id": {"$in": sorted(event_ids)},
            }
            async for doc in self._col.find(query):
                stored = stored_from_doc(doc)
                if stored.coupon.user_id == user_id and stored.coupon.tenant_id == tenant_id:
                    found.append(stored)
        return found

    async def by_code(self, tenant_id: str, code_norm: str) -> Coupon | None:
        """The claim by `_id`, then its coupon by `_id`; a claim whose coupon is missing or
        names another code (a write cut short) is an unknown code."""
        coupon_id = await self.codes.holder(tenant_id, code_norm)
        if coupon_id is None:
            return None
        doc = await self._col.find_one({"_id": coupon_id})
        return _named(doc, tenant_id, code_norm)

    async def definition_codes(
        self,
        tenant_id: str,
        definition_id: str,
        user_id: str | None,
        limit: int,
        offset: int,
        after: str | None = None,
    ) -> Page[Coupon]:
        if user_id is not None:  # among the user's few coupons
            prefix = user_prefix(tenant_id, user_id)
            extra = {"definition_id": definition_id}
            page = await list_keys.page(self._col, BY_USER, prefix, limit, offset, after, extra)
            total = await self._count_in_range(BY_USER, prefix, extra)
        else:
            prefix = definition_prefix(tenant_id, definition_id)
            page = await list_keys.page(self._col, BY_DEFINITION, prefix, limit, offset, after)
            total = await self._counters.get(counter_keys.codes(tenant_id, definition_id))
        return Page([from_doc(d) for d in page.docs], total, page.next_after)

    async def wallet(
        self, tenant_id: str, user_id: str, limit: int, offset: int, after: str | None = None
    ) -> Page[Coupon]:
        prefix = user_prefix(tenant_id, user_id)
        page = await list_keys.page(self._col, BY_USER, prefix, limit, offset, after)
        total = await self._count_in_range(BY_USER, prefix, {})
        return Page([from_doc(d) for d in page.docs], total, page.next_after)

    async def _count_in_range(self, field: str, prefix: str, extra: Doc) -> int:
        """A bounded count (one user's coupons: the ids in the user's range of the list
        key's index), not a scan of the collection."""
        start = prefix + list_keys.SEP
        query = {field: {"$gte": start, "$lt": start + list_keys.END}, **extra}
        return len([d async for d in self._col.find(query, {"_id": 1})])

    async def revoke(
        self, tenant_id: str, code_norm: str, at: datetime, by: str | None = None
    ) -> Coupon | None:
        coupon_id = await self.codes.holder(tenant_id, code_norm)
        if coupon_id is None:
            return None
        doc = await self._col.find_one_and_update(
            {"_id": coupon_id, "tenant_id": tenant_id, "code_norm": code_norm, "status": "active"},
            {"$set": {"status": "revoked", "revoked_at": at, "revoked_by": by}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:  # unknown, or revoked already: the first revocation stands
            doc = await self._col.find_one({"_id": coupon_id})
        return _named(doc, tenant_id, code_norm)

    async def delete_by_issue_key(self, issue_key: str) -> Coupon | None:
        """Delete the coupon and release its claim; returns what was deleted."""
        doc = await self._col.find_one_and_delete({"_id": issue_keys.coupon_id(issue_key)})
        if doc is None:
            return None
        coupon = from_doc(doc)
        await self.codes.release([coupon])
        await self._counters.add(counted([coupon], -1))
        return coupon


def _named(doc: Doc | None, tenant_id: str, code_norm: str) -> Coupon | None:
    if doc is None or doc.get("tenant_id") != tenant_id or doc.get("code_norm") != code_norm:
        return None
    return from_doc(doc)
