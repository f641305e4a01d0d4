"""0301: the expiry schedule of user coupons stored before it (`expiry_due`, epoch ms: see
expiry_schedule.py). Each active user coupon with an expiry gets the time of its first step
after the migration, read from its definition as it is now; steps whose time has passed
are not sent late (they predate the scheduler), and a coupon already expired gets none.
Only coupons without a due time are written (a conditional `$set`): running again changes
nothing."""

from pymongo import UpdateOne

from phoenix_coupons.adapters import coupon_repo, definition_repo
from phoenix_coupons.adapters.coupon_repo import DUE, STEPS
from phoenix_coupons.adapters.migrations import Db, Progress, Step, batches
from phoenix_coupons.adapters.mongo_schema import DEFINITIONS
from phoenix_coupons.adapters.nx27017_compat import epoch_ms
from phoenix_coupons.domain import expiry
from phoenix_coupons.domain.clock import Clock, utc_now
from phoenix_coupons.domain.config_rules import remind_before
from schemas.coupons import CouponDefinition

BATCH = 500
# Active user coupons with an expiry, neither scheduled nor ever stepped.
UNSCHEDULED = {
    "kind": "issued",
    "status": "active",
    "expires_at": {"$ne": None},
    DUE: {"$exists": False},
    STEPS: {"$exists": False},
}
clock: Clock = utc_now  # a test's own, to place the migration in time


async def run(db: Db, progress: Progress) -> None:
    now = clock()
    definitions: dict[tuple[str, str], CouponDefinition | None] = {}
    async for batch in batches(db.coupons, progress, UNSCHEDULED, BATCH):
        ops = []
        for doc in batch:
            coupon = coupon_repo.from_doc(doc)
            key = (coupon.tenant_id, coupon.definition_id)
            if key not in definitions:
                found = await db[DEFINITIONS.name].find_one(
                    {"_id": coupon.definition_id, "tenant_id": coupon.tenant_id}
                )
                definitions[key] = None if found is None else definition_repo.from_doc(found)
            defn = definitions[key]
            if defn is None or not expiry.eligible(coupon, defn):
                continue
            due = expiry.first_due(
                coupon.issued_at,
                expiry.effective_expiry(coupon, defn),
                remind_before(defn.config),
                now,
            )
            if due is not None:
                ops.append(
                    UpdateOne(
                        {"_id": doc["_id"], DUE: {"$exists": False}}, {"$set": {DUE: epoch_ms(due)}}
                    )
                )
        if ops:
            await db.coupons.bulk_write(ops, ordered=False)


async def needed(db: Db) -> bool:
    return await db.coupons.find_one(UNSCHEDULED, {"_id": 1}) is not None


STEP = Step("0301_expiry_schedule", "user coupons with an expiry -> expiry_due", run, needed)
