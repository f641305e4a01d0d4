"""A definition is stored as it is, its config nested: the look-ups by reward item and by
trigger query the nested fields (nx-27017 0.8.1 queries and indexes nested paths, so the flat
copies once kept for it are gone)."""

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from consumers.decode import decode
from phoenix_coupons.adapters.coupon_repo import MongoCouponRepo
from phoenix_coupons.adapters.definition_cache import DefinitionCache
from phoenix_coupons.adapters.definition_repo import MongoDefinitionRepo
from phoenix_coupons.bootstrap import Container
from schemas.coupons import CouponConfig, CouponDefinition

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def definition(tenant: str, reward: str, enabled: bool, status: str = "active") -> CouponDefinition:
    config: dict[str, Any] = {
        "reward_item_id": reward,
        "code_format": "random",
        "code_length": 8,
        "usage_limit": {"limit_type": "unlimited"},
        "auto_generate": {
            "enabled": enabled,
            "trigger": "achievement_completed",
            "trigger_config": {"achievement_id": f"ach-{tenant}"},
        },
    }
    return CouponDefinition(
        id=str(uuid.uuid4()),
        tenant_id=tenant,
        name="nested",
        description=None,
        config=CouponConfig.model_validate(config),
        status=status,  # type: ignore[arg-type]
        created_at=NOW,
        updated_at=NOW,
    )


async def test_definitions_are_found_by_their_nested_fields(container: Container) -> None:
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    reward, other = str(uuid.uuid4()), str(uuid.uuid4())
    repo = MongoDefinitionRepo(container.mongo, MongoCouponRepo(container.mongo))
    auto = definition(tenant, reward, enabled=True)
    manual = definition(tenant, reward, enabled=False)
    paused = definition(tenant, reward, enabled=True, status="paused")
    archived = definition(tenant, reward, enabled=True, status="archived")
    elsewhere = definition(tenant, other, enabled=True)
    for defn in (auto, manual, paused, archived, elsewhere):
        await repo.insert(defn, None)
    stored = await container.mongo.definitions.find_one({"_id": auto.id})
    assert stored is not None
    assert not {"reward_item_id", "auto_trigger"} & set(stored), "no flat copies"
    assert await repo.get(tenant, auto.id) == auto

    granting = await repo.references_reward(tenant, reward)
    assert sorted(granting) == sorted([auto.id, manual.id, paused.id])

    cache = DefinitionCache(container.mongo, refresh_seconds=60)
    await cache.reload()
    event = {
        "event_id": "e-1",
        "event_type": "achievement_completed",
        "tenant_id": tenant,
        "user_id": "u-1",
        "occurred_at": "2029-12-31T00:00:00Z",
        "data": {"achievement_id": f"ach-{tenant}"},
    }
    matched = cache.index().match(decode(json.dumps(event).encode()), NOW)
    assert sorted(m.definition.id for m in matched) == sorted([auto.id, elsewhere.id])
