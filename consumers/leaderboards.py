"""`leaderboard_rank` events (topic `phoenix.leaderboards` by default)."""

from consumers.family import decode_as
from schemas.inbound import LeaderboardRank

EVENT_TYPE = "leaderboard_rank"


def decode(value: bytes) -> LeaderboardRank:
    return decode_as(LeaderboardRank, value)
