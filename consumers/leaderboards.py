"""`leaderboard_rank` events (topic `phoenix.leaderboards` by default)."""

from consumers.family import decode_as
from phoenix_coupons.domain import inbound
from schemas import inbound as contract

EVENT_TYPE = inbound.LeaderboardRank.event_type


def decode(value: bytes) -> inbound.LeaderboardRank:
    return decode_as(contract.LeaderboardRank, inbound.LeaderboardRank, value)
