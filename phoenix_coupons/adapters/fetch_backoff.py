"""A pause after an empty fetch, for Kafka servers that answer one at once.

Kafka holds a fetch that finds no record for up to `fetch.max.wait.ms`, so an idle consumer
asks a few times a second. The embedded noida-db used in development and tests answers at
once: an idle aiokafka consumer then sends ~8,000 fetches a second, and the consumer and the
server each burn a core on them (measured: 24,000 fetches and 2.5 s of CPU in 3 s). On a
2-core machine that starves everything else, and end-to-end latency measures the spin.

Off unless `PHOENIX_KAFKA_EMPTY_FETCH_BACKOFF_MS` > 0, which `phoenix_coupons.devservers`
sets for the embedded server only. A record that arrives during the pause waits for it: keep
it a few milliseconds. aiokafka has no option for this, so its fetcher's request method is
wrapped (process-wide; aiokafka is pinned below 0.15 in pyproject.toml).
"""

import asyncio
from typing import Any

from aiokafka.consumer.fetcher import Fetcher

_pause = {"seconds": 0.0}
_original = Fetcher._proc_fetch_request


async def _fetch_then_pause_if_empty(self: Any, assignment: Any, node_id: int, request: Any) -> Any:
    got_something = await _original(self, assignment, node_id, request)
    if not got_something and _pause["seconds"] > 0:
        try:
            await asyncio.sleep(_pause["seconds"])
        except asyncio.CancelledError:
            # As the wrapped method does: the consumer stopped or lost the partitions.
            return False
    return got_something


def install(milliseconds: int) -> None:
    """Pause `milliseconds` after a fetch that brought nothing (0: no pause). Idempotent."""
    _pause["seconds"] = max(0, milliseconds) / 1000
    if milliseconds > 0:
        Fetcher._proc_fetch_request = _fetch_then_pause_if_empty


def installed() -> bool:
    return Fetcher._proc_fetch_request is _fetch_then_pause_if_empty and _pause["seconds"] > 0
