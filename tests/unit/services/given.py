"""The state the services' unit tests start from, stored in the fakes: a tenant's reward
items and coupon definitions, built as the API would have stored them."""

from datetime import timedelta
from typing import Any

from schemas.coupons import CouponDefinition
from schemas.rewards import RewardItem
from tests.fakes import Fakes

TENANT = "acme"
OTHER_TENANT = "globex"


def reward(fk: Fakes, tenant: str = TENANT, name: str = "100 points") -> RewardItem:
    item = RewardItem(
        item_id=fk.ids(),
        tenant_id=tenant,
        name=name,
        description=None,
        reward_type="points",
        payload={"amount": 100},
        created_at=fk.clock(),
        updated_at=fk.clock(),
    )
    fk.rewards.rows[item.item_id] = item
    return item


def config(reward_item_id: str, **fields: Any) -> dict[str, Any]:
    """A random-format config, one use per user, unless `fields` say otherwise."""
    return {
        "reward_item_id": reward_item_id,
        "code_format": "random",
        "code_prefix": "WIN-",
        "code_length": 8,
        "usage_limit": {"limit_type": "per_user", "max_uses": 1},
        **fields,
    }


def definition(
    fk: Fakes,
    reward_item_id: str,
    tenant: str = TENANT,
    status: str = "active",
    **fields: Any,
) -> CouponDefinition:
    """Stored as is: a test may give a config the service would refuse to create."""
    defn = CouponDefinition.model_validate(
        {
            "id": fk.ids(),
            "tenant_id": tenant,
            "name": "welcome",
            "description": None,
            "config": config(reward_item_id, **fields),
            "status": status,
            "created_at": fk.clock() - timedelta(days=1),
            "updated_at": fk.clock() - timedelta(days=1),
        }
    )
    fk.definitions.add(defn)
    return defn
