"""Issued coupons: a definition's codes (a page, or all of them exported), a user's wallet,
one code's state and timeline, revocation."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import StreamingResponse

from phoenix_coupons.api.auth import looking_up, require
from phoenix_coupons.api.deps import Coupons, Exports
from phoenix_coupons.api.errors import ERROR_RESPONSES, documented
from phoenix_coupons.api.pages import CURSOR_HEADER, send_cursor
from phoenix_coupons.api.params import (
    After,
    Code,
    DefinitionId,
    HistoryAfter,
    Limit,
    Offset,
    TenantId,
    UserFilter,
    UserId,
)
from phoenix_coupons.api.routes.redemptions import LIMITED
from phoenix_coupons.domain.scopes import COUPONS_READ, COUPONS_WRITE
from phoenix_coupons.services.api_keys import Principal
from phoenix_coupons.services.code_export import MEDIA_TYPES, ExportFormat
from schemas.history import CodeHistory
from schemas.redemptions import CodeState, CouponList, Wallet

router = APIRouter(prefix="/v1/tenants/{tenant_id}", tags=["coupons"], responses=ERROR_RESPONSES)
READ = [Depends(require(COUPONS_READ))]
Reader = Annotated[Principal, Depends(require(COUPONS_READ))]
CodeReader = Annotated[Principal, Depends(looking_up(COUPONS_READ))]
NOT_FOUND = documented(404, "No such definition or code in the tenant")


@router.get(
    "/coupons/{definition_id}/codes", dependencies=READ, responses=NOT_FOUND | CURSOR_HEADER
)
async def definition_codes(
    tenant_id: TenantId,
    definition_id: DefinitionId,
    coupons: Coupons,
    response: Response,
    user_id: UserFilter = None,
    limit: Limit = 50,
    offset: Offset = 0,
    after: After = None,
) -> CouponList:
    """The codes issued for a definition (its shared custom code included), newest first."""
    page = await coupons.definition_codes(tenant_id, definition_id, user_id, limit, offset, after)
    send_cursor(response, page.next_after)
    return page


TOTAL_COUNT = "X-Total-Count"
EXPORT_BODY: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Every code of the definition, one per line (CSV with a header row, or "
        "JSON Lines).",
        "content": {media: {"schema": {"type": "string"}} for media in MEDIA_TYPES.values()},
        "headers": {
            TOTAL_COUNT: {
                "description": "The definition's count of codes when the export began.",
                "schema": {"type": "integer"},
            },
            "Content-Disposition": {
                "description": '`attachment; filename="<definition id>-codes.<format>"`',
                "schema": {"type": "string"},
            },
        },
    }
}


@router.get(
    "/coupons/{definition_id}/codes/export",
    dependencies=READ,
    response_class=StreamingResponse,
    responses=NOT_FOUND | EXPORT_BODY,
)
async def export_codes(
    tenant_id: TenantId,
    definition_id: DefinitionId,
    exports: Exports,
    fmt: Annotated[
        ExportFormat, Query(alias="format", description="`csv` (the default) or `jsonl`.")
    ] = "csv",
) -> StreamingResponse:
    """Every code of the definition, streamed (constant memory at any count), newest issued
    first then by coupon id: code, kind, user_id, status, starts_at, expires_at, uses,
    last_redeemed_at, metadata (in CSV: JSON text; empty cells for null)."""
    export = await exports.open(tenant_id, definition_id, fmt)
    return StreamingResponse(
        export.chunks,
        media_type=export.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{export.filename}"',
            TOTAL_COUNT: str(export.total),
            "Cache-Control": "no-store",
        },
    )


@router.get("/users/{user_id}/coupons", dependencies=READ, responses=CURSOR_HEADER)
async def wallet(
    tenant_id: TenantId,
    user_id: UserId,
    coupons: Coupons,
    response: Response,
    limit: Limit = 50,
    offset: Offset = 0,
    after: After = None,
) -> Wallet:
    """A user's coupons across definitions, with the uses left to them."""
    page = await coupons.wallet(tenant_id, user_id, limit, offset, after)
    send_cursor(response, page.next_after)
    return page


@router.get("/codes/{code}", responses={**NOT_FOUND, **LIMITED})
async def code_state(
    tenant_id: TenantId,
    code: Code,
    coupons: Coupons,
    caller: CodeReader,
) -> CodeState:
    """One code's state and its redemption history (newest first, at most 100). Counts
    against the failed look-up limit like validate and redeem."""
    return await coupons.code_state(tenant_id, code, caller.key_id)


@router.get("/codes/{code}/history", responses={**NOT_FOUND, **LIMITED} | CURSOR_HEADER)
async def history(
    tenant_id: TenantId,
    code: Code,
    coupons: Coupons,
    caller: CodeReader,
    response: Response,
    limit: Limit = 50,
    offset: Offset = 0,
    after: HistoryAfter = None,
) -> CodeHistory:
    """One code's timeline, oldest first: issued (by an inbound event or a bulk request),
    reserved, released, redeemed, rolled back, revoked, expiry reminders sent, expired; each
    with its time, its actor and its details. Counts against the failed look-up limit like
    the code's state."""
    page = await coupons.history(tenant_id, code, caller.key_id, limit, offset, after)
    send_cursor(response, page.next_after)
    return page


@router.post("/codes/{code}/revoke", responses=NOT_FOUND)
async def revoke(
    tenant_id: TenantId,
    code: Code,
    coupons: Coupons,
    caller: Annotated[Principal, Depends(require(COUPONS_WRITE))],
) -> CodeState:
    """Revoke a code: redeeming it is refused from now on (`coupon_revoked`)."""
    return await coupons.revoke(tenant_id, code, caller.key_id)
