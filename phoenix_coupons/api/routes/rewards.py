"""`/v1/tenants/{tenant_id}/rewards`: reward items."""

from fastapi import APIRouter, Depends, Response, status

from phoenix_coupons.api.auth import require
from phoenix_coupons.api.deps import Rewards
from phoenix_coupons.api.errors import ERROR_RESPONSES, documented
from phoenix_coupons.api.pages import CURSOR_HEADER, send_cursor
from phoenix_coupons.api.params import After, ItemId, Limit, Offset, TenantId
from phoenix_coupons.domain.scopes import REWARDS_READ, REWARDS_WRITE
from schemas.rewards import RewardItem, RewardItemCreate, RewardItemList, RewardItemUpdate

router = APIRouter(
    prefix="/v1/tenants/{tenant_id}/rewards", tags=["reward items"], responses=ERROR_RESPONSES
)
READ = [Depends(require(REWARDS_READ))]
WRITE = [Depends(require(REWARDS_WRITE))]
NOT_FOUND = documented(404, "No such reward item in the tenant")


@router.post("", status_code=status.HTTP_201_CREATED, dependencies=WRITE)
async def create_reward(
    tenant_id: TenantId, body: RewardItemCreate, rewards: Rewards
) -> RewardItem:
    """Create a reward item that coupon definitions can grant."""
    return await rewards.create(tenant_id, body)


@router.get("", dependencies=READ, responses=CURSOR_HEADER)
async def list_rewards(
    tenant_id: TenantId,
    rewards: Rewards,
    response: Response,
    limit: Limit = 50,
    offset: Offset = 0,
    after: After = None,
) -> RewardItemList:
    """The tenant's reward items, newest first."""
    page = await rewards.page(tenant_id, limit, offset, after)
    send_cursor(response, page.next_after)
    return RewardItemList(rewards=page.items, total=page.total, next_after=page.next_after)


@router.get("/{item_id}", dependencies=READ, responses=NOT_FOUND)
async def get_reward(tenant_id: TenantId, item_id: ItemId, rewards: Rewards) -> RewardItem:
    return await rewards.get(tenant_id, item_id)


@router.put("/{item_id}", dependencies=WRITE, responses=NOT_FOUND)
async def update_reward(
    tenant_id: TenantId, item_id: ItemId, body: RewardItemUpdate, rewards: Rewards
) -> RewardItem:
    """Change the fields given; the others stay."""
    return await rewards.update(tenant_id, item_id, body)


@router.delete(
    "/{item_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=WRITE,
    responses={**NOT_FOUND, **documented(409, "Granted by a definition that is not archived")},
)
async def delete_reward(tenant_id: TenantId, item_id: ItemId, rewards: Rewards) -> Response:
    await rewards.delete(tenant_id, item_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
