"""Where the service reaches into aiokafka's internals, and why: each workaround with what
Apache Kafka does, all behind one version check.

Written against aiokafka 0.12 to 0.14 (pyproject.toml pins >=0.12,<0.15). Importing this
module with any other version fails at once, naming it: read each workaround against that
version's source (fetcher.py, group_coordinator.py, errors.py), then widen `SUPPORTED`.

1. FENCED_INSTANCE_ID (82) gets a class. Apache Kafka answers a replaced static member's
   requests that carry its `group.instance.id` with it (the Java client raises the fatal
   FencedInstanceIdException); aiokafka 0.14 has no class for the code (aio-libs/aiokafka
   #1186) and maps it to UnknownError. Registered only where aiokafka has none.
2. The group coordinator's state (member id, generation, coordinator) is read from the
   consumer's private `_coordinator`: aiokafka has no public accessor.
3. A static member leaves the group when the worker stops. aiokafka never sends LeaveGroup
   for a static member, which is the Java client's default too (a static member stays
   until its session expires, so a restart within it rebalances nothing); the Java client
   leaves on request, `close(CloseOptions.groupMembershipOperation(LEAVE_GROUP))` (Kafka
   4.1, KIP-1092). The worker asks for that: its partitions move at once instead of after
   the session timeout. aiokafka skips LeaveGroup while the coordinator holds an instance
   id, so the id is cleared before `stop()`; it then sends LeaveGroup v0 with the member
   id, with which Apache Kafka removes the member, static or not, and rebalances.
4. An optional pause after an empty fetch (`PHOENIX_KAFKA_EMPTY_FETCH_BACKOFF_MS`), for
   servers that answer an empty fetch at once. Apache Kafka holds such a fetch up to
   `fetch.max.wait.ms` (aiokafka's `fetch_max_wait_ms`, 500 ms), so an idle consumer asks a
   few times a second; the embedded noida-db answers at once, and an idle consumer then
   sent ~8,000 fetches a second (measured: 24,000 fetches and 2.5 s of CPU in 3 s), the
   consumer and the server each burning a core. Off unless set above 0, which
   `phoenix_coupons.devservers` does for the embedded server only; aiokafka has no option
   for it, so its fetcher's request method is wrapped (process-wide).
"""

import asyncio
import re
from dataclasses import dataclass
from typing import Any

import aiokafka
from aiokafka import AIOKafkaConsumer
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.errors import BrokerResponseError, kafka_errors

SUPPORTED = ((0, 12), (0, 15))  # from (inclusive), to (exclusive)


def require_supported(version: str) -> None:
    """Raises RuntimeError unless `version` is one the workarounds were written for."""
    numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:2])
    low, high = SUPPORTED
    if not low <= numbers < high:
        raise RuntimeError(
            f"aiokafka {version} is installed, but {__name__} patches and reads aiokafka "
            f"internals written for {low[0]}.{low[1]} up to (not including) "
            f"{high[0]}.{high[1]}: check each workaround against its source, then widen "
            "SUPPORTED (or install a supported aiokafka)"
        )


require_supported(aiokafka.__version__)


# ------------------------------------------------------------------ 1. FENCED_INSTANCE_ID


class FencedInstanceIdError(BrokerResponseError):  # type: ignore[misc]
    errno = 82
    message = "FENCED_INSTANCE_ID"
    description = (
        "The broker rejected this static consumer since another consumer with the same "
        "group.instance.id has registered with a different member.id."
    )


kafka_errors.setdefault(FencedInstanceIdError.errno, FencedInstanceIdError)


# ------------------------------------------------------------------ 2. coordinator state


@dataclass(frozen=True)
class GroupState:
    """The consumer's group membership as its coordinator knows it: `member_id` is empty
    once the coordinator forgot it (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION); `coordinator_id`
    None while the group coordinator cannot be reached."""

    member_id: str
    generation: int
    coordinator_id: int | None


def group_state(consumer: AIOKafkaConsumer) -> GroupState | None:
    """None before the consumer started (or without a group)."""
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None or not hasattr(coordinator, "member_id"):
        return None
    return GroupState(
        coordinator.member_id or "", coordinator.generation, coordinator.coordinator_id
    )


# ------------------------------------------------------------------ 3. leave on stop


def leave_group_on_stop(consumer: AIOKafkaConsumer) -> bool:
    """Make a static member send LeaveGroup when it stops, as a dynamic one does. Returns
    whether anything changed (False: dynamic already, or not started)."""
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None or getattr(coordinator, "_group_instance_id", None) is None:
        return False
    coordinator._group_instance_id = None
    return True


# ------------------------------------------------------------------ 4. empty-fetch pause

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


def install_fetch_pause(milliseconds: int) -> None:
    """Pause `milliseconds` after a fetch that brought nothing (0: no pause, and nothing
    is wrapped unless an earlier call did). Idempotent."""
    _pause["seconds"] = max(0, milliseconds) / 1000
    if milliseconds > 0:
        Fetcher._proc_fetch_request = _fetch_then_pause_if_empty


def fetch_pause_installed() -> bool:
    return Fetcher._proc_fetch_request is _fetch_then_pause_if_empty and _pause["seconds"] > 0
