"""The default Kafka topic names; each is configurable (`PHOENIX_TOPIC_*`, see
phoenix_coupons.settings), and the AsyncAPI document names these."""

ACHIEVEMENTS = "phoenix.achievements"
STREAKS = "phoenix.streaks"
LEADERBOARDS = "phoenix.leaderboards"
COUPONS_ISSUED = "phoenix.coupons.issued"
COUPONS_REDEEMED = "phoenix.coupons.redeemed"
COUPONS_EXPIRY = "phoenix.coupons.expiry"
DEAD_LETTERS = "phoenix.coupons.dlq"
