"""Prometheus metrics of redemption and code look-ups (the API's own)."""

from prometheus_client import Counter

REDEMPTIONS = Counter(
    "phoenix_redemptions_total",
    "Redemption requests answered with a redemption: redeemed (a new use), replayed (the same "
    "Idempotency-Key and body again), rolled_back",
    ["outcome"],
)
RESERVATIONS = Counter(
    "phoenix_reservations_total",
    "Hold requests answered: reserved (a new hold), replayed (a keyed reserve again), "
    "confirmed (a hold turned into its redemption), released",
    ["outcome"],
)
REFUSALS = Counter(
    "phoenix_redemption_refusals_total",
    "Redeem and reserve requests refused, by the refusal code (code_not_found, expired, ..., "
    "too_many_failed_lookups)",
    ["reason"],
)
LOOKUPS_REFUSED = Counter(
    "phoenix_code_lookups_refused_total",
    "Code look-ups (validate, redeem, code state) answered 429: the API key's failed look-ups "
    "in the tenant are over the limit",
)
