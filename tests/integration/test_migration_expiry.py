"""Migration step 0301: user coupons stored before the expiry schedule get the due time of
their first step after the migration; past steps are not sent late, and coupons without
steps (expired, revoked, shared, without an expiry, archived definition) get none."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from phoenix_coupons.adapters import definition_repo
from phoenix_coupons.adapters.coupon_repo import DUE, to_doc
from phoenix_coupons.adapters.migrations import Db, m0301_expiry_schedule, migrate, pending
from phoenix_coupons.adapters.mongo import Mongo
from phoenix_coupons.adapters.mongo_schema import DEFINITIONS
from phoenix_coupons.domain.coupon_factory import CouponFactory
from schemas.coupons import CouponDefinition

T0 = datetime(2030, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
STEP = m0301_expiry_schedule.STEP


def definition(defn_id: str, status: str = "active", **config: Any) -> CouponDefinition:
    return CouponDefinition.model_validate(
        {
            "id": defn_id,
            "tenant_id": "t-m",
            "name": "n",
            "description": None,
            "config": {
                "reward_item_id": "r",
                "code_format": "random",
                "code_length": 8,
                "usage_limit": {"limit_type": "unlimited"},
                **config,
            },
            "status": status,
            "created_at": T0 - 30 * DAY,
            "updated_at": T0 - 30 * DAY,
        }
    )


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def old_doc(defn: CouponDefinition, user: str, issued_at: datetime, **fields: Any) -> Any:
    """A coupon as the version before the schedule stored it: no `expiry_due`."""
    coupon = CouponFactory.of(defn, "bulk").coupon(f"k:{user}", f"C{user}", issued_at, user)
    doc = {**to_doc(coupon), **fields}
    doc.pop(DUE, None)
    return doc


@pytest.fixture
def db(own_mongo: Mongo, monkeypatch: pytest.MonkeyPatch) -> Db:
    monkeypatch.setattr(m0301_expiry_schedule, "clock", lambda: T0 + 2 * DAY)
    return own_mongo.db


async def test_stored_user_coupons_get_their_next_step_after_the_migration(db: Db) -> None:
    week = definition("d-week", valid_for="P7D", remind_before=["P3D"])
    archived = definition("d-gone", "archived", valid_for="P7D")
    endless = definition("d-endless")
    await db[DEFINITIONS.name].insert_many(
        [definition_repo.to_doc(d) for d in (week, archived, endless)]
    )
    docs = [
        old_doc(week, "fresh", T0),  # P3D at T0+4D: still ahead
        old_doc(week, "late", T0 - 3 * DAY),  # P3D at T0+1D passed: its expiry, T0+4D
        old_doc(week, "expired", T0 - 10 * DAY),  # expired at T0-3D: nothing
        old_doc(week, "revoked", T0, status="revoked"),
        old_doc(archived, "archived", T0),
        old_doc(endless, "endless", T0),
    ]
    await db.coupons.insert_many(docs)
    assert await pending(db, [STEP]) == [STEP.name]

    report = await migrate(db, [STEP])
    assert [s.state for s in report.steps] == ["done"]
    dues = {d["user_id"]: d.get(DUE) async for d in db.coupons.find()}
    assert dues == {
        "fresh": ms(T0 + 4 * DAY),
        "late": ms(T0 + 4 * DAY),
        "expired": None,
        "revoked": None,
        "archived": None,
        "endless": None,
    }
    assert [s.state for s in (await migrate(db, [STEP])).steps] == ["done before"]


async def test_a_database_of_this_version_needs_no_walk(db: Db) -> None:
    week = definition("d-week", valid_for="P7D")
    coupon = CouponFactory.of(week, "bulk").coupon("k:new", "CNEW", T0, "new")
    await db.coupons.insert_one(to_doc(coupon))
    assert await pending(db, [STEP]) == []
