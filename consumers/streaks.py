"""`streak_milestone` events (topic `phoenix.streaks` by default)."""

from consumers.family import decode_as
from phoenix_coupons.domain import inbound
from schemas import inbound as contract

EVENT_TYPE = inbound.StreakMilestone.event_type


def decode(value: bytes) -> inbound.StreakMilestone:
    return decode_as(contract.StreakMilestone, inbound.StreakMilestone, value)
