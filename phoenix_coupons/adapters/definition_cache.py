"""The active auto-generate definitions, in memory, reloaded every few seconds: matching an
event never waits on MongoDB, and API changes take effect within the refresh period."""

import asyncio
import time

import structlog

from phoenix_coupons.adapters.background import cancel_and_wait
from phoenix_coupons.adapters.definition_repo import auto_generating, from_doc
from phoenix_coupons.adapters.mongo import Mongo
from phoenix_coupons.domain.matching import DefinitionIndex
from schemas.inbound import EVENT_TYPES

log = structlog.get_logger(__name__)


class DefinitionCache:
    def __init__(self, mongo: Mongo, refresh_seconds: float) -> None:
        self._col = mongo.definitions
        self._refresh = refresh_seconds
        self._index = DefinitionIndex(())
        self._task: asyncio.Task[None] | None = None
        self.loaded_at: float | None = None  # monotonic time of the last successful load

    def index(self) -> DefinitionIndex:
        return self._index

    @property
    def loaded(self) -> bool:
        return self.loaded_at is not None

    async def reload(self) -> None:
        cursor = self._col.find(auto_generating(EVENT_TYPES))
        definitions = [from_doc(doc) async for doc in cursor]
        self._index = DefinitionIndex(definitions)
        self.loaded_at = time.monotonic()

    async def start(self) -> None:
        """Load once (the worker must not match against nothing), then refresh in the
        background; a failed refresh keeps the last good set and is retried."""
        await self.reload()
        log.info("definitions_loaded", count=self._index.size)
        self._task = asyncio.create_task(self._loop(), name="definition-cache")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh)
            try:
                await self.reload()
            except Exception as exc:
                log.warning("definitions_refresh_failed", error=repr(exc))

    async def stop(self) -> None:
        if self._task:
            await cancel_and_wait(self._task)
            self._task = None
