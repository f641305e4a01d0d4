"""Time, injected: the domain never reads the wall clock itself."""

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """Now in UTC, cut to milliseconds: the precision MongoDB stores, so values round-trip."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
