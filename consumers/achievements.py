"""`achievement_completed` events (topic `phoenix.achievements` by default)."""

from consumers.family import decode_as
from phoenix_coupons.domain import inbound
from schemas import inbound as contract

EVENT_TYPE = inbound.AchievementCompleted.event_type


def decode(value: bytes) -> inbound.AchievementCompleted:
    return decode_as(contract.AchievementCompleted, inbound.AchievementCompleted, value)
