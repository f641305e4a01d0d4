"""API key scopes."""

COUPONS_READ = "coupons:read"
COUPONS_WRITE = "coupons:write"
COUPONS_REDEEM = "coupons:redeem"
REWARDS_READ = "rewards:read"
REWARDS_WRITE = "rewards:write"

ALL_SCOPES = frozenset({COUPONS_READ, COUPONS_WRITE, COUPONS_REDEEM, REWARDS_READ, REWARDS_WRITE})


def parse_scopes(text: str) -> tuple[str, ...]:
    """`a,b` -> ('a', 'b'); unknown scopes raise ValueError naming them."""
    scopes = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    unknown = sorted(set(scopes) - ALL_SCOPES)
    if unknown:
        raise ValueError(
            f"unknown scopes: {', '.join(unknown)} (known: {', '.join(sorted(ALL_SCOPES))})"
        )
    if not scopes:
        raise ValueError("give at least one scope")
    return scopes
