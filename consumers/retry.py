"""The worker's retry policy: what is retried, and how long it waits in between.

- A batch attempt that fails is retried with exponential backoff (0.1 s doubling, at most
  10 s apart) until it succeeds or the worker stops; nothing is committed meanwhile and the
  order within a partition is kept. Not retried: a commit the group refused (the partitions
  moved: their new owner redelivers the batch) and FENCED_INSTANCE_ID (membership.py).
- Dependencies being started (definitions, producer, consumer) are retried the same way
  (0.2 s doubling, at most 10 s) until they answer or the worker stops.
- A failed fetch waits 0.2 s doubling, at most 10 s, before the next one.
"""

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiokafka.errors import CommitFailedError, OutOfOrderSequenceNumber, UnknownProducerId
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential

from consumers.membership import is_fenced_instance

log = structlog.get_logger(__name__)

# Not retried: the group moved on, the partitions' new owner redelivers the batch. Retrying
# would hold the lock the revocation waits for, and fail for ever. (A fenced partition
# producer is handled per partition: consumers/transactions.py.)
NOT_RETRIED = (CommitFailedError,)
# The producer's sender stops for good on these (a broker that lost the idempotent producer's
# state, e.g. restarted): the retry starts a new producer.
PRODUCER_LOST = (OutOfOrderSequenceNumber, UnknownProducerId)
FETCH_PAUSE_MAX_S = 10.0


def retried(exc: BaseException) -> bool:
    return not isinstance(exc, NOT_RETRIED) and not is_fenced_instance(exc)


def batch_attempts(
    stopping: Callable[[], bool], before_sleep: Callable[[RetryCallState], Awaitable[None]]
) -> AsyncRetrying:
    """The attempts at a batch; raises `RetryError` when the worker stops meanwhile."""
    return AsyncRetrying(
        wait=wait_exponential(multiplier=0.1, max=10),
        stop=lambda _: stopping(),
        retry=retry_if_exception(retried),
        before_sleep=before_sleep,
    )


async def until_up(
    start: Callable[[], Awaitable[Any]], what: str, stopping: Callable[[], bool]
) -> Any:
    """Start a dependency, retrying with backoff while it is unreachable (None: stopped)."""
    async for attempt in AsyncRetrying(
        wait=wait_exponential(multiplier=0.2, max=10),
        stop=lambda _: stopping(),
        before_sleep=lambda state: log.warning(
            "dependency_unavailable", dependency=what, error=repr(exception(state))
        ),
        reraise=True,
    ):
        with attempt:
            return await start()
    return None


def fetch_pause(failures: int) -> float:
    """The wait after `failures` fetches failed in a row."""
    return min(FETCH_PAUSE_MAX_S, 0.2 * 2.0**failures)


def exception(state: RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome is not None else None
