"""0101: the list keys (list_keys.py) of coupons, definitions and reward items stored before
them: `by_definition`/`by_user`, `by_tenant`/`by_status`, `by_tenant`. Only documents
without their key are walked and written (a conditional `$set`): running again changes
nothing. One step per collection, so each resumes on its own."""

from collections.abc import Callable

from pymongo import UpdateOne

from phoenix_coupons.adapters import coupon_repo, definition_repo, reward_repo
from phoenix_coupons.adapters.migrations import Db, Progress, Step, batches
from phoenix_coupons.adapters.mongo import Doc
from phoenix_coupons.adapters.mongo_schema import COUPONS, DEFINITIONS, REWARDS
from phoenix_coupons.adapters.nx27017_compat import aware

BATCH = 500


def coupon_keys(doc: Doc) -> Doc:
    return coupon_repo.list_fields(coupon_repo.from_doc(doc))


def definition_keys(doc: Doc) -> Doc:
    return definition_repo.list_fields(
        doc["tenant_id"], doc["status"], aware(doc["created_at"]), doc["_id"]
    )


def reward_keys(doc: Doc) -> Doc:
    key = reward_repo.list_key(doc["tenant_id"], aware(doc["created_at"]), doc["_id"])
    return {reward_repo.BY_TENANT: key}


async def write(
    db: Db, collection: str, marker: str, keys: Callable[[Doc], Doc], docs: list[Doc]
) -> None:
    ops = [
        UpdateOne({"_id": d["_id"], marker: {"$exists": False}}, {"$set": keys(d)}) for d in docs
    ]
    if ops:
        await db[collection].bulk_write(ops, ordered=False)


def step(name: str, collection: str, marker: str, keys: Callable[[Doc], Doc]) -> Step:
    """`marker`: the list key every document of the new layout has."""
    missing = {marker: {"$exists": False}}

    async def run(db: Db, progress: Progress) -> None:
        async for batch in batches(db[collection], progress, missing, BATCH):
            await write(db, collection, marker, keys, batch)

    async def needed(db: Db) -> bool:
        return await db[collection].find_one(missing, {"_id": 1}) is not None

    return Step(name, f"list keys of {collection}", run, needed)


COUPONS_STEP = step("0101_coupon_list_keys", COUPONS.name, coupon_repo.BY_DEFINITION, coupon_keys)
DEFINITIONS_STEP = step(
    "0102_definition_list_keys", DEFINITIONS.name, definition_repo.BY_TENANT, definition_keys
)
REWARDS_STEP = step("0103_reward_list_keys", REWARDS.name, reward_repo.BY_TENANT, reward_keys)
