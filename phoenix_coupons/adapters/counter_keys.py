"""Names of the kept counts (adapters/counters.py), one place for writers and recounts."""

from phoenix_coupons.adapters.list_keys import user_digest

ALL_TENANTS = "*"


def space(tenant_id: str, code_space: str) -> str:
    """Claims in a code space: the capacity check of random codes."""
    return f"space:{tenant_id}:{code_space}"


def codes(tenant_id: str, definition_id: str) -> str:
    """A definition's coupons (its shared code included)."""
    return f"codes:{tenant_id}:{definition_id}"


def wallet(tenant_id: str, user_id: str) -> str:
    """No longer kept: a wallet's total is counted in the user's own list-key range (a user
    holds few coupons; one upsert per stored coupon cost the worker a third of its writes).
    `migrate --recount` removes counts of this name an earlier version kept."""
    return f"wallet:{tenant_id}:{user_digest(user_id)}"


def definitions(tenant_id: str | None, status: str) -> str:
    """A tenant's definitions in a status (None: all tenants')."""
    return f"definitions:{tenant_id or ALL_TENANTS}:{status}"


def jobs(tenant_id: str, definition_id: str) -> str:
    """A definition's generation jobs (their list's total)."""
    return f"jobs:{tenant_id}:{definition_id}"


def rewards(tenant_id: str) -> str:
    return f"rewards:{tenant_id}"


ISSUED = "issued"


def issued(tenant_id: str, definition_id: str) -> str:
    """Coupons a definition with an issuance limit has reserved (issuance_budget.py): taken
    before its coupons are stored, given back for those not stored."""
    return f"{ISSUED}:{tenant_id}:{definition_id}"
