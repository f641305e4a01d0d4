"""Generation jobs in MongoDB (port JobStore): the job (`generation_jobs`, `_id` its id) and
its rows, stored apart in chunks (`generation_job_rows`, `_id` "<rows key>:<chunk>"), so
no document nears MongoDB's 16 MB: a chunk holds at most PHOENIX_JOB_CHUNK_SIZE rows of at
most ~4.5 KiB each. A count job (`unassigned`) stores no rows: its chunks of lines are made
from the job (domain/jobs.count_rows, with the `chunk_size` it was cut with).

The queue is a field of the job: `queue` (epoch ms) is present while the job is queued or
running and says when a runner may take it: its creation for a new job, its lease's end
for a running one. A runner claims the oldest job with `queue <= now` by moving `queue` to
its lease's end with its attempt id (`lease`), a compare-and-set only one runner wins; it
extends the lease and records each chunk done in one update conditional on holding it. A
runner that dies leaves its job to the next runner when the lease ends. One single-field
index serves the claim; another, the list key `by_definition`, a definition's list."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ReplaceOne, ReturnDocument
from pymongo.errors import DuplicateKeyError

from phoenix_coupons.adapters import counter_keys, list_keys
from phoenix_coupons.adapters.counters import MongoCounters
from phoenix_coupons.adapters.mongo import Doc, Mongo, raise_unacknowledged
from phoenix_coupons.adapters.mongo_schema import GENERATION_JOB_ROWS, GENERATION_JOBS
from phoenix_coupons.adapters.nx27017_compat import aware, epoch_ms
from phoenix_coupons.domain.jobs import Job, Row, RowError, rows_key
from phoenix_coupons.services.ports import Page

QUEUE, LEASE, BY_DEFINITION = "queue", "lease", "by_definition"
WRITE_CHUNKS = 8  # row chunks per bulk write: bounded memory per round trip


def _prefix(tenant_id: str, definition_id: str) -> str:
    return list_keys.key(tenant_id, definition_id)


def to_doc(job: Job) -> Doc:
    return {
        "_id": job.id,
        "tenant_id": job.tenant_id,
        "definition_id": job.definition_id,
        "state": job.status,  # `state`: the field the outbox sweep compares (outbox.py)
        "total": job.total,
        "chunks": job.chunks,
        "next_chunk": job.next_chunk,
        "generated": job.generated,
        "failed": job.failed,
        "errors": [_error_doc(e) for e in job.errors],
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "cancel_requested": job.cancel_requested,
        "reason": job.reason,
        "request_hash": job.request_hash,
        "issued_by": job.issued_by,
        "request_id": job.request_id,
        "metadata": job.metadata,
        "unassigned": job.unassigned,
        "chunk_size": job.chunk_size,
        QUEUE: epoch_ms(job.created_at),
        LEASE: None,
        BY_DEFINITION: list_keys.key(
            _prefix(job.tenant_id, job.definition_id), list_keys.tail(job.created_at, job.id)
        ),
    }


def _error_doc(e: RowError) -> Doc:
    return {"line": e.line, "value": e.value, "reason": e.reason}


def from_doc(doc: Doc) -> Job:
    return Job(
        id=doc["_id"],
        tenant_id=doc["tenant_id"],
        definition_id=doc["definition_id"],
        status=doc["state"],
        total=doc["total"],
        chunks=doc["chunks"],
        created_at=aware(doc["created_at"]),
        request_hash=doc["request_hash"],
        generated=doc["generated"],
        failed=doc["failed"],
        errors=[RowError(e["line"], e["value"], e["reason"]) for e in doc.get("errors") or ()],
        next_chunk=doc["next_chunk"],
        started_at=aware(doc.get("started_at")),
        finished_at=aware(doc.get("finished_at")),
        cancel_requested=bool(doc.get("cancel_requested")),
        reason=doc.get("reason"),
        issued_by=doc.get("issued_by"),
        request_id=doc.get("request_id"),
        metadata=doc.get("metadata"),
        unassigned=bool(doc.get("unassigned")),
        chunk_size=doc.get("chunk_size") or 0,
    )


def _row_doc(row: Row) -> Doc:
    doc: Doc = {"l": row.line, "u": row.user_id}
    if row.code is not None:
        doc["c"] = row.code
    if row.metadata is not None:
        doc["m"] = row.metadata
    if row.error is not None:
        doc["e"] = row.error
    return doc


def _row(doc: Doc) -> Row:
    return Row(doc["l"], doc["u"], doc.get("c"), doc.get("m"), doc.get("e"))


def _chunk_id(key: str, chunk: int) -> str:
    return f"{key}:{chunk:07d}"


class MongoJobStore:
    def __init__(self, mongo: Mongo) -> None:
        self._jobs = mongo.db[GENERATION_JOBS.name]
        self._rows = mongo.db[GENERATION_JOB_ROWS.name]
        self._counters = MongoCounters(mongo)

    async def insert_rows(self, job: Job, chunks: Sequence[Sequence[Row]]) -> None:
        """Before the job: a job is never stored without its rows. Replaced by `_id`, so a
        retried keyed submission writes the same chunks again."""
        key = rows_key(job)
        for start in range(0, len(chunks), WRITE_CHUNKS):
            ops = [
                ReplaceOne(
                    {"_id": _chunk_id(key, n)},
                    {"_id": _chunk_id(key, n), "rows": [_row_doc(r) for r in chunks[n]]},
                    upsert=True,
                )
                for n in range(start, min(start + WRITE_CHUNKS, len(chunks)))
            ]
            result = await self._rows.bulk_write(ops, ordered=False)
            raise_unacknowledged(result.bulk_api_result)

    async def insert(self, job: Job) -> Job | None:
        """None once stored; the job stored before under the same id otherwise."""
        try:
            await self._jobs.insert_one(to_doc(job))
        except DuplicateKeyError:
            doc = await self._jobs.find_one({"_id": job.id})
            if doc is None:  # gone in between: cannot happen (jobs are never deleted)
                raise
            return from_doc(doc)
        await self._counters.add({counter_keys.jobs(job.tenant_id, job.definition_id): 1})
        return None

    async def get(self, tenant_id: str, job_id: str) -> Job | None:
        doc = await self._jobs.find_one({"_id": job_id, "tenant_id": tenant_id})
        return None if doc is None else from_doc(doc)

    async def page(
        self, tenant_id: str, definition_id: str, limit: int, offset: int, after: str | None
    ) -> Page[Job]:
        prefix = _prefix(tenant_id, definition_id)
        page = await list_keys.page(self._jobs, BY_DEFINITION, prefix, limit, offset, after)
        total = await self._counters.get(counter_keys.jobs(tenant_id, definition_id))
        return Page([from_doc(d) for d in page.docs], total, page.next_after)

    async def claim(self, now: datetime, lease_until: datetime, attempt: str) -> Job | None:
        """The oldest job a runner may take at `now`, held by `attempt` until `lease_until`;
        None when there is none (or another runner took it first: the next call looks again)."""
        now_ms = epoch_ms(now)
        due = await self._jobs.find_one({QUEUE: {"$lte": now_ms}}, {"_id": 1}, sort=[(QUEUE, 1)])
        if due is None:
            return None
        doc = await self._jobs.find_one_and_update(
            {"_id": due["_id"], QUEUE: {"$lte": now_ms}},
            {"$set": {QUEUE: epoch_ms(lease_until), LEASE: attempt, "state": "running"}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return None
        if doc.get("started_at") is None:
            await self._jobs.update_one(
                {"_id": doc["_id"], LEASE: attempt}, {"$set": {"started_at": now}}
            )
            doc["started_at"] = now
        return from_doc(doc)

    async def rows(self, job: Job, chunk: int) -> list[Row]:
        doc = await self._rows.find_one({"_id": _chunk_id(rows_key(job), chunk)})
        if doc is None:
            raise LookupError(f"rows chunk {chunk} of job {job.id} is missing")
        return [_row(r) for r in doc["rows"]]

    async def commit(self, job: Job, attempt: str, chunk: int, lease_until: datetime) -> bool:
        """Chunk `chunk` done with the job's counts as they are now, and the lease extended:
        only while `attempt` holds the job and the chunk is the next one (else False: the
        lease was lost, and the chunk is another runner's to record)."""
        result = await self._jobs.update_one(
            {"_id": job.id, LEASE: attempt, "next_chunk": chunk},
            {
                "$set": {
                    "next_chunk": chunk + 1,
                    "generated": job.generated,
                    "failed": job.failed,
                    "errors": [_error_doc(e) for e in job.errors],
                    QUEUE: epoch_ms(lease_until),
                }
            },
        )
        return result.modified_count == 1

    async def cancel_requested(self, tenant_id: str, job_id: str) -> Job | None:
        """Flag a job that is not over (its runner stops at the next chunk); the job as it
        is now, None if there is no such job."""
        doc = await self._jobs.find_one_and_update(
            {"_id": job_id, "tenant_id": tenant_id, "state": {"$in": ["queued", "running"]}},
            {"$set": {"cancel_requested": True}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            doc = await self._jobs.find_one({"_id": job_id, "tenant_id": tenant_id})
        return None if doc is None else from_doc(doc)

    async def finish(self, job: Job, attempt: str | None, at: datetime) -> bool:
        """The job over in `job.status` with its counts: while `attempt` holds it (None:
        a queued job no runner took, cancelled where it waits)."""
        held: Doc = {LEASE: attempt} if attempt is not None else {"state": "queued", LEASE: None}
        fields: dict[str, Any] = {
            "state": job.status,
            "finished_at": at,
            "reason": job.reason,
            "generated": job.generated,
            "failed": job.failed,
            "errors": [_error_doc(e) for e in job.errors],
            "next_chunk": job.next_chunk,
            LEASE: None,
        }
        result = await self._jobs.update_one(
            {"_id": job.id, **held}, {"$set": fields, "$unset": {QUEUE: ""}}
        )
        return result.modified_count == 1

    async def release(self, job: Job, attempt: str, now: datetime) -> None:
        await self._jobs.update_one(
            {"_id": job.id, LEASE: attempt}, {"$set": {QUEUE: epoch_ms(now), LEASE: None}}
        )
