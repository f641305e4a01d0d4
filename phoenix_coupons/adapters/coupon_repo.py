"""Coupons in MongoDB. The unique index on (tenant_id, code_norm) is the final word on code
uniqueness; `_id`, derived from the issue key (`issue_keys.coupon_id`), makes issuance
idempotent.

A coupon's document holds more than the domain's `Coupon`: the inbound record that issued it
(`trigger_record`, "topic:partition:offset", read by the worker's redelivery rules). Its
`coupon.issued` event waits in the outbox (outbox.py), not on the coupon."""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from datetime import datetime

from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import BulkWriteError, DuplicateKeyError

from phoenix_coupons.adapters.mongo import Doc, Mongo, duplicates_only
from phoenix_coupons.adapters.nx27017_compat import aware
from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.delivery import EventRef, RecordId
from phoenix_coupons.domain.errors import DuplicateCodes
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.services.ports import StoredCoupon

IN_CHUNK = 1000  # keep `$in` lists and batches a reasonable size
ORDER = [("issued_at", -1), ("_id", 1)]  # lists: newest first (indexes in mongo_schema.py)

_FIELDS = {f.name for f in fields(Coupon)}
_STORED = tuple(f.name for f in fields(Coupon) if f.name != "id")


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
    return doc


def from_doc(doc: Doc) -> Coupon:
    data = {k: v for k, v in doc.items() if k in _FIELDS}
    data["revoked_at"] = aware(data.get("revoked_at"))
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

    async def taken(self, tenant_id: str, code_norms: Sequence[str]) -> set[str]:
        """Which of `code_norms` are already used in the tenant."""
        found: set[str] = set()
        for chunk in _chunks(code_norms):
            cursor = self._col.find(
                {"tenant_id": tenant_id, "code_norm": {"$in": list(chunk)}}, {"code_norm": 1}
            )
            found.update([d["code_norm"] async for d in cursor])
        return found

    async def count_in_space(self, tenant_id: str, code_space: str) -> int:
        return await self._col.count_documents({"tenant_id": tenant_id, "code_space": code_space})

    async def insert_unordered(
        self, coupons: Sequence[Coupon], records: Mapping[str, RecordId] | None = None
    ) -> list[int]:
        """Insert what can be inserted; return the positions refused as duplicates. Raises
        when the write concern was not met (`raise_unacknowledged`): nothing counts as stored.
        `records`: event coupons' inbound records, by issue key."""
        failed: list[int] = []
        origin = (records or {}).get
        for start in range(0, len(coupons), IN_CHUNK):
            batch = coupons[start : start + IN_CHUNK]
            try:
                docs = [to_doc(c, origin(c.issue_key)) for c in batch]
                await self._col.insert_many(docs, ordered=False)
            except BulkWriteError as exc:
                failed += [start + i for i in duplicates_only(exc)]
        return failed

    async def insert_atomic(
        self, coupons: Sequence[Coupon], session: AsyncClientSession | None = None
    ) -> None:
        """All or nothing, in a transaction (started here unless `session` is in one)."""
        docs = [to_doc(c) for c in coupons]
        if session is not None:
            await self._insert_in(docs, session)
            return
        async with self._mongo.client.start_session() as own:
            await own.with_transaction(lambda s: self._insert_in(docs, s))

    async def _insert_in(self, docs: list[Doc], session: AsyncClientSession) -> None:
        try:
            await self._col.insert_many(docs, ordered=True, session=session)
        except DuplicateKeyError as exc:
            raise DuplicateCodes(str(exc)) from exc
        except BulkWriteError as exc:
            duplicates_only(exc)  # raises unless every refusal is a duplicate
            raise DuplicateCodes(str(exc)) from exc

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
        """Coupons issued for these inbound events. Served by the (tenant, user) index the
        wallet uses; the event id is filtered on."""
        found: list[StoredCoupon] = []
        for start in range(0, len(events), IN_CHUNK):
            chunk = events[start : start + IN_CHUNK]
            wanted = set(chunk)
            query = {
                "tenant_id": {"$in": sorted({e.tenant_id for e in chunk})},
                "user_id": {"$in": sorted({e.user_id for e in chunk})},
                "trigger_event_id": {"$in": sorted({e.event_id for e in chunk})},
            }
            async for doc in self._col.find(query):
                stored = stored_from_doc(doc)
                coupon = stored.coupon
                origin = EventRef(
                    coupon.tenant_id, coupon.user_id or "", coupon.trigger_event_id or ""
                )
                if origin in wanted:
                    found.append(stored)
        return found

    async def by_code(self, tenant_id: str, code_norm: str) -> Coupon | None:
        doc = await self._col.find_one({"tenant_id": tenant_id, "code_norm": code_norm})
        return from_doc(doc) if doc else None

    async def definition_codes(
        self, tenant_id: str, definition_id: str, user_id: str | None, limit: int, offset: int
    ) -> tuple[list[Coupon], int]:
        query: Doc = {"tenant_id": tenant_id, "definition_id": definition_id}
        if user_id is not None:
            query["user_id"] = user_id
        return await self._page(query, limit, offset)

    async def wallet(
        self, tenant_id: str, user_id: str, limit: int, offset: int
    ) -> tuple[list[Coupon], int]:
        return await self._page({"tenant_id": tenant_id, "user_id": user_id}, limit, offset)

    async def _page(self, query: Doc, limit: int, offset: int) -> tuple[list[Coupon], int]:
        total = await self._col.count_documents(query)
        cursor = self._col.find(query).sort(ORDER)
        return [from_doc(d) async for d in cursor.skip(offset).limit(limit)], total

    async def revoke(self, tenant_id: str, code_norm: str, at: datetime) -> Coupon | None:
        doc = await self._col.find_one_and_update(
            {"tenant_id": tenant_id, "code_norm": code_norm, "status": "active"},
            {"$set": {"status": "revoked", "revoked_at": at}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:  # unknown, or revoked already: the first revocation stands
            doc = await self._col.find_one({"tenant_id": tenant_id, "code_norm": code_norm})
        return from_doc(doc) if doc else None

    async def delete_by_issue_key(
        self, issue_key: str, session: AsyncClientSession | None = None
    ) -> None:
        await self._col.delete_one({"_id": issue_keys.coupon_id(issue_key)}, session=session)
