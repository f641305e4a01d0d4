"""The outbox in MongoDB: one document per event waiting to be published (`_id` = the
event's id), deleted by the relay once sent (outbox_relay.py), so the collection holds
pending records only and its queries stay small whatever the size of what they announce.

An entry holds the record laid out (key, value, headers; as text), its `source` (the event type: the
relay's topic and metrics label), `created_at` (when the event occurred: the send order),
`state` ("prepared", then "ready" once its subject is stored), `after` (an entry that must be
gone first) and `subject` (`{collection, _id, code?, state?, step_mark?}`: what the sweep
checks before it readies a prepared entry a crash left).

A bundle (`IssuedBundle`, a generation job's chunk) is one entry for the `coupon.issued` of
many coupons: no record laid out, `subject` `{collection: "coupons", bundle: [coupon ids]}`
and `size` (how many). The relay builds each coupon's record from the coupon as stored
(`bundle_units`), or from the coupons its writer handed to the relay of its process
(`OutboxRelay.hand`: read back, a chunk's 1,000 coupons cost the embedded MongoDB about
0.1 ms a code); the sweep readies a crash's bundle naming the coupons it finds stored, or
drops it when none is. One outbox write per chunk instead of one per coupon, at every step
(prepare, ready, the relay's claim, its delete)."""

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from phoenix_coupons.adapters import counter_keys
from phoenix_coupons.adapters.code_history import history_doc, insert_history
from phoenix_coupons.adapters.coupon_repo import STEPS, from_doc
from phoenix_coupons.adapters.kafka import event_record, stored_parts
from phoenix_coupons.adapters.mongo import Doc, Mongo, duplicates_only
from phoenix_coupons.adapters.mongo_schema import COUNTERS, GENERATION_JOBS, OUTBOX
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.domain.outbox import IssuedBundle, OutboxEntry, issued

PREPARED, READY = "prepared", "ready"
COLLECTIONS = {
    "coupon": "coupons",
    "redemption": "redemptions",
    "reservation": "reservations",
    "budget": COUNTERS.name,
    "job": GENERATION_JOBS.name,
}
CHUNK = 1000
SWEEP_BATCH = 1000
BUNDLE, SIZE = "bundle", "size"  # a bundle's coupon ids (in `subject`) and their count
ISSUED = "coupon.issued"


def entry_doc(entry: OutboxEntry, state: str = PREPARED) -> Doc:
    key, value, headers = stored_parts(event_record(entry.event, ""))  # topic: the relay's
    subject: Doc = {"collection": COLLECTIONS[entry.subject.kind], "_id": _subject_id(entry)}
    if entry.subject.code is not None:
        subject["code"] = entry.subject.code
    if entry.subject.state is not None:
        subject["state"] = entry.subject.state
    if entry.subject.step_mark is not None:
        subject["step_mark"] = entry.subject.step_mark
    return {
        "_id": entry.id,
        "source": entry.event.event_type,
        "tenant_id": entry.event.tenant_id,
        "key": key,
        "value": value,
        "headers": headers,
        "created_at": entry.event.occurred_at,
        "state": state,
        "after": entry.after,
        "subject": subject,
        "lease": None,
        "owner": None,
        "history": None if entry.history is None else history_doc(entry.history),
    }


def bundle_doc(bundle: IssuedBundle, state: str = PREPARED) -> Doc:
    return {
        "_id": bundle.id,
        "source": ISSUED,
        "tenant_id": bundle.tenant_id,
        "key": None,
        "value": None,
        "headers": None,
        "created_at": bundle.at,
        "state": state,
        "after": None,
        "subject": bundle_subject(bundle.coupon_ids),
        SIZE: len(bundle.coupon_ids),
        "lease": None,
        "owner": None,
        "history": None,
    }


def bundle_subject(coupon_ids: Sequence[str]) -> Doc:
    return {"collection": COLLECTIONS["coupon"], BUNDLE: list(coupon_ids)}


def is_bundle(doc: Doc) -> bool:
    return BUNDLE in (doc.get("subject") or {})


async def bundle_units(
    mongo: Mongo, bundle: Doc, handed: Mapping[str, Coupon] | None = None
) -> list[Doc]:
    """A bundle's events as the single entries they would be (ready), one per coupon it
    names that is stored, in the bundle's order: one set aside is re-queued as such.
    `handed`: coupons its writer handed over as stored, by id: when they hold every coupon
    the bundle names, none is read back."""
    ids: list[str] = bundle["subject"][BUNDLE]
    if handed is not None and all(i in handed for i in ids):
        return [entry_doc(issued(handed[i]), READY) for i in ids]
    stored: dict[str, Doc] = {}
    for chunk in _chunks(ids):
        async for doc in mongo.coupons.find({"_id": {"$in": chunk}}):
            stored[doc["_id"]] = doc
    return [entry_doc(issued(from_doc(stored[i])), READY) for i in ids if i in stored]


def _subject_id(entry: OutboxEntry) -> str:
    """A budget's subject is its count's document (`issued:<tenant>:<definition>`)."""
    if entry.subject.kind == "budget":
        return counter_keys.issued(entry.event.tenant_id, entry.subject.id)
    return entry.subject.id


def _chunks(ids: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(ids), CHUNK):
        yield list(ids[start : start + CHUNK])


def _keep_nothing(bundle: IssuedBundle) -> None:
    pass


class MongoOutbox:
    """`handed`: given each bundle readied with its coupons (the relay of this process:
    `OutboxRelay.hand`)."""

    def __init__(
        self, mongo: Mongo, handed: Callable[[IssuedBundle], None] = _keep_nothing
    ) -> None:
        self._mongo = mongo
        self._col = mongo.db[OUTBOX.name]
        self._handed = handed

    async def prepare(self, entries: Sequence[OutboxEntry]) -> None:
        """Inserted prepared; an entry of the same id replaced only while prepared (a retry's,
        whose document never came or will be written again): a ready one is left as it is."""
        for start in range(0, len(entries), CHUNK):
            docs = [entry_doc(e) for e in entries[start : start + CHUNK]]
            try:
                await self._col.insert_many(docs, ordered=False)
            except BulkWriteError as exc:
                for i in duplicates_only(exc):
                    await self._col.replace_one({"_id": docs[i]["_id"], "state": PREPARED}, docs[i])

    async def ready(self, entries: Sequence[OutboxEntry]) -> None:
        """History first: once an entry is ready, the relay may send and delete it."""
        await insert_history(self._mongo, [history_doc(e.history) for e in entries if e.history])
        await _set_ready(self._col, [e.id for e in entries])

    async def discard(self, ids: Sequence[str]) -> None:
        for chunk in _chunks(ids):
            await self._col.delete_many({"_id": {"$in": chunk}, "state": PREPARED})

    async def prepare_new(self, entry: OutboxEntry) -> bool:
        try:
            await self._col.insert_one(entry_doc(entry))
        except DuplicateKeyError:
            return False
        return True

    async def prepare_issued(self, bundle: IssuedBundle) -> None:
        await self._col.insert_one(bundle_doc(bundle))

    async def ready_issued(self, bundle: IssuedBundle) -> None:
        if await _ready_bundle(self._col, bundle.id, bundle.coupon_ids):
            self._handed(bundle)
            return
        if not bundle.coupon_ids:
            return
        # A sweep settled it first (this writer outlived the grace): it named only the
        # coupons stored by then. Announce them all again in a ready entry of their own
        # (the events keep their ids: consumers drop the repeats).
        late = replace(bundle, id=f"{bundle.id}:late")
        with contextlib.suppress(DuplicateKeyError):
            await self._col.insert_one(bundle_doc(late, READY))
        self._handed(late)


async def _set_ready(col: AsyncCollection[Doc], ids: Sequence[str]) -> None:
    for chunk in _chunks(ids):
        await col.update_many(
            {"_id": {"$in": chunk}, "state": PREPARED}, {"$set": {"state": READY}}
        )


async def _ready_bundle(
    col: AsyncCollection[Doc], bundle_id: str, coupon_ids: Sequence[str]
) -> bool:
    """Ready a prepared bundle naming `coupon_ids` (stored); naming none, drop it. False
    when it was not prepared any more (a sweep settled it)."""
    query = {"_id": bundle_id, "state": PREPARED}
    if not coupon_ids:
        return (await col.delete_one(query)).deleted_count == 1
    subject = bundle_subject(coupon_ids)
    done = await col.update_one(
        query, {"$set": {"state": READY, "subject": subject, SIZE: len(coupon_ids)}}
    )
    return done.matched_count == 1


async def _sweep_bundle(mongo: Mongo, bundle: Doc) -> None:
    """The coupons a crash left stored are announced; the others never will be stored
    (their writer stores them within the grace or not at all)."""
    ids: list[str] = bundle["subject"][BUNDLE]
    found: set[str] = set()
    for chunk in _chunks(ids):
        cursor = mongo.coupons.find({"_id": {"$in": chunk}}, {"_id": 1})
        found.update([d["_id"] async for d in cursor])
    await _ready_bundle(mongo.db[OUTBOX.name], bundle["_id"], [i for i in ids if i in found])


def _matches(subject: Doc, stored: Doc | None) -> bool:
    if stored is None:
        return False
    if "step_mark" in subject and subject["step_mark"] not in (stored.get(STEPS) or ()):
        return False
    return all(stored.get(f) == subject[f] for f in ("code", "state") if f in subject)


async def sweep_outbox(mongo: Mongo, now: datetime, grace: timedelta) -> int:
    """Prepared entries older than `grace` (their writer crashed or gave up): readied when
    their subject is stored as announced, dropped when it is not (it never will be: writers
    store it within the grace or not at all). Returns how many it settled."""
    col = mongo.db[OUTBOX.name]
    stale = await col.find(
        {"state": PREPARED, "created_at": {"$lt": now - grace}}, {"subject": 1, "history": 1}
    ).to_list(SWEEP_BATCH)
    by_collection: dict[str, list[Doc]] = {}
    bundles = [d for d in stale if is_bundle(d)]
    for bundle in bundles:
        await _sweep_bundle(mongo, bundle)
    for doc in (d for d in stale if not is_bundle(d)):
        by_collection.setdefault(doc["subject"]["collection"], []).append(doc)
    ready: list[Doc] = []
    drop: list[str] = []
    for collection, docs in by_collection.items():
        ids = [d["subject"]["_id"] for d in docs]
        found = {
            s["_id"]: s
            async for s in mongo.db[collection].find(
                {"_id": {"$in": ids}}, {"code": 1, "state": 1, STEPS: 1}
            )
        }
        for d in docs:
            subject = d["subject"]
            if _matches(subject, found.get(subject["_id"])):
                ready.append(d)
            else:
                drop.append(d["_id"])
    await insert_history(mongo, [d["history"] for d in ready if d.get("history")])
    await _set_ready(col, [d["_id"] for d in ready])
    await MongoOutbox(mongo).discard(drop)
    return len(ready) + len(drop) + len(bundles)
