"""Coupon definitions and bulk generation, as the admin gateway spec describes them."""

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response, status

from phoenix_coupons.api.auth import requester, require, require_global
from phoenix_coupons.api.deps import Definitions, Generation
from phoenix_coupons.api.errors import ERROR_RESPONSES, documented
from phoenix_coupons.api.pages import CURSOR_HEADER, send_cursor
from phoenix_coupons.api.params import (
    After,
    DefinitionId,
    Limit,
    Offset,
    TenantFilter,
    TenantId,
)
from phoenix_coupons.domain.models import Requester
from phoenix_coupons.domain.scopes import COUPONS_READ, COUPONS_WRITE
from schemas.coupons import (
    CouponDefinition,
    DefinitionCreate,
    DefinitionList,
    DefinitionUpdate,
    DefinitionView,
    GenerateRequest,
    GenerateResponse,
    Status,
    StatusUpdate,
)

router = APIRouter(prefix="/v1", tags=["coupon definitions"], responses=ERROR_RESPONSES)
BASE = "/tenants/{tenant_id}/coupons"
READ = [Depends(require(COUPONS_READ))]
WRITE = [Depends(require(COUPONS_WRITE))]
# A write whose coupons keep who asked for them (their timelines show it).
Writer = Annotated[Requester, Depends(requester(COUPONS_WRITE))]
NOT_FOUND = documented(404, "No such definition in the tenant")
CONFLICT = documented(409, "Archived, paused or conflicting codes")
StatusFilter = Annotated[Status | None, Query(description="Only definitions in this status.")]
IncludeArchived = Annotated[
    bool, Query(description="Also list archived definitions (left out by default).")
]


@router.get(
    "/coupons", dependencies=[Depends(require_global(COUPONS_READ))], responses=CURSOR_HEADER
)
async def list_all_definitions(
    definitions: Definitions,
    response: Response,
    status: StatusFilter = None,
    include_archived: IncludeArchived = False,
    tenant_id: TenantFilter = None,
    limit: Limit = 50,
    offset: Offset = 0,
    after: After = None,
) -> DefinitionList:
    """All tenants' definitions (admin only: `X-API-Key` of a key bound to no tenant)."""
    page = await definitions.page(tenant_id, status, include_archived, limit, offset, after)
    send_cursor(response, page.next_after)
    return DefinitionList(definitions=page.items, total=page.total)


@router.post(BASE, status_code=status.HTTP_201_CREATED, responses=CONFLICT)
async def create_definition(
    tenant_id: TenantId, body: DefinitionCreate, definitions: Definitions, by: Writer
) -> CouponDefinition:
    """Create a coupon definition (defaults: `case_sensitive: false`, `code_length: 8` for
    random codes without a `code_pattern`, `charset: unambiguous`, `status: active`)."""
    return await definitions.create(tenant_id, body, by)


@router.get(BASE, dependencies=READ, responses=CURSOR_HEADER)
async def list_definitions(
    tenant_id: TenantId,
    definitions: Definitions,
    response: Response,
    status: StatusFilter = None,
    include_archived: IncludeArchived = False,
    limit: Limit = 50,
    offset: Offset = 0,
    after: After = None,
) -> DefinitionList:
    """The tenant's definitions, newest first; archived ones only when asked for."""
    page = await definitions.page(tenant_id, status, include_archived, limit, offset, after)
    send_cursor(response, page.next_after)
    return DefinitionList(definitions=page.items, total=page.total)


@router.get(BASE + "/{definition_id}", dependencies=READ, responses=NOT_FOUND)
async def get_definition(
    tenant_id: TenantId, definition_id: DefinitionId, definitions: Definitions
) -> DefinitionView:
    """The definition; with `config.issuance_limit`, also `issued` and `remaining`."""
    return await definitions.view(tenant_id, definition_id)


@router.put(BASE + "/{definition_id}", responses={**NOT_FOUND, **CONFLICT})
async def update_definition(
    tenant_id: TenantId,
    definition_id: DefinitionId,
    body: DefinitionUpdate,
    definitions: Definitions,
    by: Writer,
) -> CouponDefinition:
    """Change name, description and config (a JSON merge patch of the stored config; the
    merged config is validated whole). Any other field answers 422."""
    return await definitions.update(tenant_id, definition_id, body, by)


@router.put(
    BASE + "/{definition_id}/status", dependencies=WRITE, responses={**NOT_FOUND, **CONFLICT}
)
async def update_status(
    tenant_id: TenantId, definition_id: DefinitionId, body: StatusUpdate, definitions: Definitions
) -> CouponDefinition:
    """Pause or activate. Archiving is `DELETE` and final."""
    return await definitions.set_status(tenant_id, definition_id, body.status)


@router.delete(
    BASE + "/{definition_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=WRITE,
    responses=NOT_FOUND,
)
async def archive_definition(
    tenant_id: TenantId, definition_id: DefinitionId, definitions: Definitions
) -> Response:
    """Archive (soft delete): the definition no longer processes events or generates."""
    await definitions.archive(tenant_id, definition_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    BASE + "/{definition_id}/generate",
    status_code=status.HTTP_201_CREATED,
    responses={**NOT_FOUND, **CONFLICT},
)
async def generate(
    tenant_id: TenantId,
    definition_id: DefinitionId,
    body: GenerateRequest,
    generation: Generation,
    by: Writer,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=255,
            description="Same key and body within 24 h: the first response, nothing new.",
        ),
    ] = None,
) -> GenerateResponse:
    """Generate one coupon per user (1 to 10,000), each announced on the outbound topic. The
    coupons keep the caller's key id and the request's `X-Request-Id` (their timelines)."""
    return await generation.generate(tenant_id, definition_id, body, idempotency_key, by)
