"""`achievement_completed` events (topic `phoenix.achievements` by default)."""

from consumers.family import decode_as
from schemas.inbound import AchievementCompleted

EVENT_TYPE = "achievement_completed"


def decode(value: bytes) -> AchievementCompleted:
    return decode_as(AchievementCompleted, value)
