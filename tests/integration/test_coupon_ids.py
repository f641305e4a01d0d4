"""A coupon's `_id` is derived from its issue key: the unique `_id` index alone refuses a
second coupon for a key (no index of its own on `issue_key`)."""

import uuid
from typing import Any

from phoenix_coupons.adapters.coupon_repo import MongoCouponRepo
from phoenix_coupons.adapters.mongo import Mongo
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.clock import utc_now
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.settings import Settings


def coupon(tenant: str, key: str, code: str) -> Coupon:
    return Coupon(
        id=issue_keys.coupon_id(key),
        tenant_id=tenant,
        definition_id="def-1",
        reward_item_id="reward-1",
        code=code,
        code_norm=code,
        kind="issued",
        source="event",
        issue_key=key,
        issued_at=utc_now(),
        user_id="user-1",
    )


async def test_a_second_coupon_for_an_issue_key_is_refused(container: Container) -> None:
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    key = issue_keys.event("def-1", "user-1", f"ach-{uuid.uuid4().hex[:6]}")
    repo = MongoCouponRepo(container.mongo)
    first, again = coupon(tenant, key, "CODEAAAA"), coupon(tenant, key, "CODEBBBB")
    other = coupon(tenant, issue_keys.event("def-1", "user-2", "ach-1"), "CODECCCC")
    assert await repo.insert_unordered([first, again, other]) == [1]
    found = await repo.by_issue_keys([key, "evt:unknown"])
    assert list(found) == [key]
    assert (found[key].id, found[key].code) == (first.id, "CODEAAAA")


async def test_the_index_older_databases_kept_on_issue_key_is_dropped(settings: Settings) -> None:
    mongo = Mongo(settings.mongodb_uri or "", f"legacy_{uuid.uuid4().hex[:8]}", 3600)
    try:
        await mongo.coupons.create_index("issue_key", unique=True)
        assert _keyed_on_issue_key(await mongo.coupons.index_information())
        await mongo.ensure_indexes()
        await mongo.ensure_indexes()  # idempotent
        indexes = await mongo.coupons.index_information()
        assert not _keyed_on_issue_key(indexes)
        assert any(spec["key"] == [("by_definition", 1)] for spec in indexes.values())
    finally:
        await mongo.client.drop_database(mongo.db.name)
        await mongo.close()


def _keyed_on_issue_key(indexes: dict[str, Any]) -> list[str]:
    return [name for name, spec in indexes.items() if spec["key"] == [("issue_key", 1)]]
