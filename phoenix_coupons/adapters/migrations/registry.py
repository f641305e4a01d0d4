"""The migration steps in the order they run, and the recounts (`migrate --recount`). A new
step is a module of this package whose `STEP` is appended here, after the others."""

from phoenix_coupons.adapters.migrations import (
    Step,
    api_keys_by_hash,
    m0100_code_registry,
    m0101_list_keys,
    m0104_counts,
    m0200_coupon_outbox,
    m0201_redemption_outbox,
    m0202_redemption_slots,
    m0301_expiry_schedule,
    m0302_claim_times,
)

STEPS: list[Step] = [
    m0100_code_registry.STEP,
    m0101_list_keys.COUPONS_STEP,
    m0101_list_keys.DEFINITIONS_STEP,
    m0101_list_keys.REWARDS_STEP,
    m0104_counts.STEP,
    m0200_coupon_outbox.STEP,
    m0201_redemption_outbox.STEP,
    m0202_redemption_slots.STEP,
    api_keys_by_hash.STEP,
    m0301_expiry_schedule.STEP,
    m0302_claim_times.STEP,
]
RECOUNTS: list[Step] = [*m0104_counts.RECOUNTS, m0202_redemption_slots.RECOUNT]
