"""Step 0302: unconfirmed code claims stored with a datetime (the earlier layout) get their
time in epoch ms, which the claims sweep compares; confirmed claims and claims already in ms
are left as they are; a second run changes nothing; the sweep then settles a migrated claim
as it settles a new one."""

from datetime import UTC, datetime, timedelta

from phoenix_coupons.adapters.claims_sweep import sweep_claims
from phoenix_coupons.adapters.code_registry import UNCONFIRMED, claim_doc
from phoenix_coupons.adapters.coupon_repo import to_doc
from phoenix_coupons.adapters.migrations import m0302_claim_times, migrate, pending
from phoenix_coupons.adapters.mongo import Doc, Mongo
from phoenix_coupons.adapters.mongo_schema import CODES
from phoenix_coupons.adapters.nx27017_compat import epoch_ms
from phoenix_coupons.domain.models import Coupon
from tests.integration.test_code_registry import coupon

STEP = m0302_claim_times.STEP
AT = datetime(2030, 1, 1, 12, tzinfo=UTC)


def old_claim(code: str | Coupon, at: datetime | None) -> Doc:
    """A claim as the earlier version stored it: `unconfirmed` a datetime (None: confirmed)."""
    doc = claim_doc(coupon("t-m", code) if isinstance(code, str) else code, AT, False)
    if at is not None:
        doc[UNCONFIRMED] = at
    return doc


async def test_unconfirmed_claims_get_their_time_in_ms_and_the_sweep_settles_them(
    own_mongo: Mongo,
) -> None:
    codes = own_mongo.db[CODES.name]
    landed = coupon("t-m", "LANDED01")
    await codes.insert_many(
        [
            old_claim("LOST0001", AT + timedelta(seconds=1)),
            old_claim(landed, AT),
            old_claim("CONFIRM1", None),
            {**old_claim("NEWER001", None), UNCONFIRMED: epoch_ms(AT)},
        ]
    )
    assert await pending(own_mongo.db, [STEP]) == [STEP.name]

    report = await migrate(own_mongo.db, [STEP])
    assert [s.state for s in report.steps] == ["done"]
    times = {d["_id"]: d.get(UNCONFIRMED) async for d in codes.find()}
    assert times == {
        "t-m:LOST0001": epoch_ms(AT) + 1000,
        "t-m:LANDED01": epoch_ms(AT),
        "t-m:CONFIRM1": None,
        "t-m:NEWER001": epoch_ms(AT),
    }
    await own_mongo.db.migrations.delete_many({})  # even from the start: nothing left to do
    assert await pending(own_mongo.db, [STEP]) == []

    # The coupon of one claim landed before the crash; the other never came.
    await own_mongo.coupons.insert_one(to_doc(landed))
    assert await sweep_claims(own_mongo, AT + timedelta(hours=1), timedelta(minutes=2)) == 3
    left = {d["_id"]: d async for d in codes.find()}
    assert set(left) == {"t-m:LANDED01", "t-m:CONFIRM1"}
    assert UNCONFIRMED not in left["t-m:LANDED01"]
