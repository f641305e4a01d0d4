"""Path and query parameters shared by the routes. Every one is bounded (schemas.bounds)."""

from typing import Annotated

from fastapi import Path, Query

from schemas.bounds import (
    CODE_MAX_LENGTH,
    CODE_PATTERN,
    EXTERNAL_ID_MAX_LENGTH,
    ID_MAX_LENGTH,
    INT_MAX,
    TENANT_ID_MAX_LENGTH,
    TENANT_ID_PATTERN,
)

TenantId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=TENANT_ID_MAX_LENGTH,
        pattern=TENANT_ID_PATTERN,
        description="Tenant identifier.",
    ),
]
TenantFilter = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=TENANT_ID_MAX_LENGTH,
        pattern=TENANT_ID_PATTERN,
        description="Only this tenant.",
    ),
]
# Ids the service generated (UUIDs); anything longer cannot be one.
DefinitionId = Annotated[
    str, Path(min_length=1, max_length=ID_MAX_LENGTH, description="Coupon definition id.")
]
ItemId = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH, description="Reward item id.")]
RedemptionId = Annotated[
    str, Path(min_length=1, max_length=ID_MAX_LENGTH, description="Redemption id.")
]
ReservationId = Annotated[
    str, Path(min_length=1, max_length=ID_MAX_LENGTH, description="Reservation id.")
]
UserId = Annotated[
    str, Path(min_length=1, max_length=EXTERNAL_ID_MAX_LENGTH, description="The user's id.")
]
UserFilter = Annotated[
    str | None,
    Query(min_length=1, max_length=EXTERNAL_ID_MAX_LENGTH, description="Only this user's codes."),
]
# Codes are ASCII: a look-alike of another script is refused before any look-up.
Code = Annotated[
    str,
    Path(
        min_length=1,
        max_length=CODE_MAX_LENGTH,
        pattern=CODE_PATTERN,
        description="The code (case ignored unless the definition is case-sensitive).",
    ),
]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size.")]
# Bounded: MongoDB's skip is a signed 64-bit int (a larger offset was a 500).
Offset = Annotated[int, Query(ge=0, le=INT_MAX, description="Items to skip.")]
# A page's `next_after`, handed back: "<18 digits>|<id>" (list_keys.py); opaque to clients.
After = Annotated[
    str | None,
    Query(
        max_length=ID_MAX_LENGTH + 19,
        pattern=r"^[0-9]{18}\|[A-Za-z0-9_.:-]+$",
        description="The `next_after` of the previous page: the page after it (then `offset` "
        "is not used). Pages by cursor cost the same at any depth.",
    ),
]
# A timeline page's `next_after`: "<15 digits>|<kind>|<ref>" (domain/history.py).
HistoryAfter = Annotated[
    str | None,
    Query(
        max_length=ID_MAX_LENGTH * 2 + 32,
        pattern=r"^[0-9]{15}\|[a-z_]{1,16}\|[!-{}~]+$",
        description="The `next_after` of the previous page: the page after it (then `offset` "
        "is not used). Pages by cursor cost the same at any depth.",
    ),
]
