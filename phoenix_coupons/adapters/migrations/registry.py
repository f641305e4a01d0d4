"""The migration steps in the order they run, and the recounts (`migrate --recount`). A new
step is a module of this package whose `STEP` is appended here, after the others."""

from phoenix_coupons.adapters.migrations import Step, api_keys_by_hash

STEPS: list[Step] = [api_keys_by_hash.STEP]
RECOUNTS: list[Step] = []
