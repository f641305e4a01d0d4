"""`streak_milestone` events (topic `phoenix.streaks` by default)."""

from consumers.family import decode_as
from schemas.inbound import StreakMilestone

EVENT_TYPE = "streak_milestone"


def decode(value: bytes) -> StreakMilestone:
    return decode_as(StreakMilestone, value)
