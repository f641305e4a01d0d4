"""0100: the code registry from the coupons stored before it. Each coupon's code gets its
claim, confirmed (`codes`, `_id = "<tenant>:<code_norm>"`); an upsert that only inserts,
so running again changes nothing. The old unique index made codes unique per tenant: no two
coupons compete for one claim."""

from pymongo import UpdateOne

from phoenix_coupons.adapters.code_registry import claim_doc
from phoenix_coupons.adapters.coupon_repo import from_doc
from phoenix_coupons.adapters.migrations import Db, Progress, Step, batches
from phoenix_coupons.adapters.mongo import Doc
from phoenix_coupons.adapters.mongo_schema import CODES, COUPONS

NAME = "0100_code_registry"
BATCH = 500


async def write(db: Db, docs: list[Doc]) -> None:
    ops = []
    for doc in docs:
        coupon = from_doc(doc)
        claim = claim_doc(coupon, coupon.issued_at, unconfirmed=False)
        ops.append(UpdateOne({"_id": claim.pop("_id")}, {"$setOnInsert": claim}, upsert=True))
    if ops:
        await db[CODES.name].bulk_write(ops, ordered=False)


async def run(db: Db, progress: Progress) -> None:
    async for batch in batches(db[COUPONS.name], progress, None, BATCH):
        await write(db, batch)


async def needed(db: Db) -> bool:
    """Coupons stored and no registry yet: a database of the layout before it."""
    if await db[COUPONS.name].find_one({}, {"_id": 1}) is None:
        return False
    return await db[CODES.name].find_one({}, {"_id": 1}) is None


STEP = Step(NAME, "claims in the code registry for the coupons stored before it", run, needed)
