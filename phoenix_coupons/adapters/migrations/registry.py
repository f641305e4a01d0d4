"""The migration steps in the order they run, and the recounts (`migrate --recount`). A new
step is a module of this package whose `STEP` is appended here, after the others."""

from phoenix_coupons.adapters.migrations import (
    Step,
    m0100_code_registry,
    m0101_list_keys,
    m0104_counts,
)

STEPS: list[Step] = [
    m0100_code_registry.STEP,
    m0101_list_keys.COUPONS_STEP,
    m0101_list_keys.DEFINITIONS_STEP,
    m0101_list_keys.REWARDS_STEP,
    m0104_counts.STEP,
]
RECOUNTS: list[Step] = [*m0104_counts.RECOUNTS]
