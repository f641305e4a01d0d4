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
Offset = Annotated[int, Query(ge=0, description="Items to skip.")]


def container(request: Request) -> Container:
    c: Container = request.app.state.container
    return c


Services = Annotated[Container, Depends(container)]
