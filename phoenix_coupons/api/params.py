"""Path and query parameters shared by the routes."""

from typing import Annotated

from fastapi import Depends, Path, Query, Request

from phoenix_coupons.bootstrap import Container

TenantId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Tenant identifier.",
    ),
]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size.")]
# Bounded: MongoDB's skip is a signed 64-bit int (a larger offset was a 500).
Offset = Annotated[int, Query(ge=0, le=2**31 - 1, description="Items to skip.")]


def container(request: Request) -> Container:
    c: Container = request.app.state.container
    return c


Services = Annotated[Container, Depends(container)]
