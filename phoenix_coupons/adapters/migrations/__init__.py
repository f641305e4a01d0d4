"""`phoenix-coupons migrate`: bring data stored by an earlier version to the current layout.

Each step (a module of this package, listed in order in `registry.py`) is idempotent and
resumable. It walks its collection in `_id` order in batches (`batches`) and records after
each batch the last `_id` it finished in `migrations` (`_id` = the step's name): a step cut
short resumes after its last batch, a finished step is skipped, and running one again from
the start changes nothing (each of its writes is an upsert or a conditional update).

A step also says whether a database needs it at all (`needed`): a fresh database, or one
whose data is already in the new layout, marks it done without walking anything. The service
refuses to start while a needed step is not done (`require_migrated`): the new indexes
would otherwise stand beside data they do not cover.

The recounts (`registry.RECOUNTS`) compute the kept counts (adapters/counters.py) again
from what is stored: `phoenix-coupons migrate --recount`, after a crash may have cut a write
from its count.
"""

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from phoenix_coupons.adapters.mongo import Doc
from phoenix_coupons.adapters.mongo_schema import MIGRATIONS
from phoenix_coupons.domain.errors import ConfigurationError

log = structlog.get_logger(__name__)

BATCH = 500
Db = AsyncDatabase[Doc]


@dataclass
class Progress:
    """A step's progress as stored: `last_id`, the last `_id` it finished (None: none yet)."""

    name: str
    _col: AsyncCollection[Doc]
    last_id: Any = None
    done: bool = False
    migrated: int = 0

    async def advance(self, last_id: Any, count: int) -> None:
        self.last_id, self.migrated = last_id, self.migrated + count
        await self._save()

    async def finish(self) -> None:
        self.done = True
        await self._save()

    async def _save(self) -> None:
        await self._col.update_one(
            {"_id": self.name},
            {
                "$set": {
                    "last_id": self.last_id,
                    "done": self.done,
                    "migrated": self.migrated,
                    "at": datetime.now(UTC),
                }
            },
            upsert=True,
        )


@dataclass(frozen=True)
class Step:
    """`name`: stable, ordered (`0001_...`); `run` walks what it migrates (with `batches`);
    `needed`: whether this database holds anything in the old layout."""

    name: str
    summary: str
    run: Callable[[Db, Progress], Awaitable[None]]
    needed: Callable[[Db], Awaitable[bool]]


@dataclass
class StepReport:
    name: str
    state: str  # "done before", "not needed", "done"
    migrated: int = 0


@dataclass
class MigrationReport:
    steps: list[StepReport] = field(default_factory=list)
    recounted: list[str] = field(default_factory=list)


async def batches(
    col: AsyncCollection[Doc],
    progress: Progress,
    query: Mapping[str, Any] | None = None,
    size: int = BATCH,
    projection: Mapping[str, Any] | None = None,
) -> AsyncIterator[list[Doc]]:
    """The documents of `col` matching `query` after the step's last `_id`, in `_id` order,
    `size` at a time. The progress advances past a batch once the caller asks for the next
    one (it has handled that batch), so a crash repeats at most the batch in hand."""
    where: dict[str, Any] = dict(query or {})
    if progress.last_id is not None:
        where["_id"] = {"$gt": progress.last_id}
    cursor = col.find(where, projection).sort("_id", 1).batch_size(size)
    batch: list[Doc] = []
    async for doc in cursor:
        batch.append(doc)
        if len(batch) == size:
            yield batch
            await progress.advance(batch[-1]["_id"], len(batch))
            batch = []
    if batch:
        yield batch
        await progress.advance(batch[-1]["_id"], len(batch))


def _registered() -> tuple[list[Step], list[Step]]:
    # The registry imports the step modules, which import this module.
    from phoenix_coupons.adapters.migrations import registry

    return registry.STEPS, registry.RECOUNTS


async def _progress(db: Db, name: str) -> Progress:
    col = db[MIGRATIONS.name]
    doc = await col.find_one({"_id": name}) or {}
    return Progress(
        name, col, doc.get("last_id"), bool(doc.get("done")), int(doc.get("migrated", 0))
    )


async def migrate(
    db: Db, steps: Sequence[Step] | None = None, recount: bool = False
) -> MigrationReport:
    """Run every step not done yet, in order; with `recount`, every recount after them."""
    report = MigrationReport()
    registered, recounts = _registered()
    for step in registered if steps is None else steps:
        progress = await _progress(db, step.name)
        if progress.done:
            report.steps.append(StepReport(step.name, "done before", progress.migrated))
            continue
        if progress.last_id is None and not await step.needed(db):
            await progress.finish()
            report.steps.append(StepReport(step.name, "not needed"))
            continue
        log.info("migration_step_started", step=step.name, after=progress.last_id)
        await step.run(db, progress)
        await progress.finish()
        log.info("migration_step_done", step=step.name, migrated=progress.migrated)
        report.steps.append(StepReport(step.name, "done", progress.migrated))
    if recount:
        for count in recounts:
            await count.run(db, Progress(count.name, db[MIGRATIONS.name]))
            report.recounted.append(count.name)
    return report


async def pending(db: Db, steps: Sequence[Step] | None = None) -> list[str]:
    """The steps this database still needs (marking those it does not need done)."""
    left: list[str] = []
    for step in _registered()[0] if steps is None else steps:
        progress = await _progress(db, step.name)
        if progress.done:
            continue
        if progress.last_id is None and not await step.needed(db):
            await progress.finish()
            continue
        left.append(step.name)
    return left


async def require_migrated(db: Db) -> None:
    """Raises ConfigurationError naming the steps this database still needs."""
    left = await pending(db)
    if left:
        raise ConfigurationError(
            "the database holds data in an earlier layout: run `phoenix-coupons migrate` "
            f"(with this version) before starting the service; steps to run: {', '.join(left)}"
        )
