"""0104 and the recounts: the kept counts (counters.py, counter_keys.py) computed from what is
stored: claims per code space, coupons per definition, definitions per tenant and status
(and of all tenants), reward items per tenant (a wallet is counted in its own range). Each
count is set, not added to, and a count of the same kind nothing holds any more is set to 0:
running it again gives the same counts. `phoenix-coupons migrate --recount` runs these
after a crash may have cut a write from its count (run it with the service stopped, or
expect the writes made meanwhile to be counted again by a later recount)."""

from collections import Counter
from collections.abc import Awaitable, Callable

from pymongo import UpdateOne

from phoenix_coupons.adapters import counter_keys
from phoenix_coupons.adapters.code_registry import split_id
from phoenix_coupons.adapters.migrations import Db, Progress, Step
from phoenix_coupons.adapters.mongo_schema import CODES, COUNTERS, COUPONS, DEFINITIONS, REWARDS

BATCH = 1000


async def _walk(db: Db, collection: str, fields: list[str], count: Callable[..., None]) -> None:
    projection = {f: 1 for f in fields}
    async for doc in db[collection].find({}, projection).batch_size(BATCH):
        count(doc)


async def _store(db: Db, kinds: tuple[str, ...], counts: Counter[str]) -> None:
    """Set every count of these kinds (`space:`, ...) to what was counted, 0 if nothing."""
    col = db[COUNTERS.name]
    ops = [UpdateOne({"_id": k}, {"$set": {"n": n}}, upsert=True) for k, n in counts.items()]
    for kind in kinds:
        async for doc in col.find({"_id": {"$regex": f"^{kind}:"}}, {"_id": 1}):
            if doc["_id"] not in counts:
                ops.append(UpdateOne({"_id": doc["_id"]}, {"$set": {"n": 0}}))
    for start in range(0, len(ops), BATCH):
        await col.bulk_write(ops[start : start + BATCH], ordered=False)


async def spaces(db: Db) -> None:
    counts: Counter[str] = Counter()

    def count(doc: dict[str, object]) -> None:
        space = doc.get("code_space")
        if space:
            counts[counter_keys.space(split_id(str(doc["_id"]))[0], str(space))] += 1

    await _walk(db, CODES.name, ["code_space"], count)
    await _store(db, ("space",), counts)


async def coupons(db: Db) -> None:
    counts: Counter[str] = Counter()

    def count(doc: dict[str, object]) -> None:
        tenant = str(doc["tenant_id"])
        counts[counter_keys.codes(tenant, str(doc["definition_id"]))] += 1

    # "wallet" counts are no longer kept (counter_keys.wallet): old ones are set to 0.
    await _walk(db, COUPONS.name, ["tenant_id", "definition_id"], count)
    await _store(db, ("codes", "wallet"), counts)


async def issued(db: Db) -> None:
    """The issuance budgets: coupons stored per definition (its shared code is not issued),
    for the definitions counted (a count exists only where a limit was set). A crash between
    a reservation and its insert leaves a budget above what was stored: set back to it."""
    counts: Counter[str] = Counter()

    def count(doc: dict[str, object]) -> None:
        if doc.get("source") != "definition":
            counts[counter_keys.issued(str(doc["tenant_id"]), str(doc["definition_id"]))] += 1

    await _walk(db, COUPONS.name, ["tenant_id", "definition_id", "source"], count)
    col = db[COUNTERS.name]
    kept = [d["_id"] async for d in col.find({"_id": {"$regex": f"^{counter_keys.ISSUED}:"}})]
    ops = [UpdateOne({"_id": k}, {"$set": {"n": counts.get(k, 0)}}) for k in kept]
    for start in range(0, len(ops), BATCH):
        await col.bulk_write(ops[start : start + BATCH], ordered=False)


async def definitions(db: Db) -> None:
    counts: Counter[str] = Counter()

    def count(doc: dict[str, object]) -> None:
        for tenant in (str(doc["tenant_id"]), None):
            counts[counter_keys.definitions(tenant, str(doc["status"]))] += 1

    await _walk(db, DEFINITIONS.name, ["tenant_id", "status"], count)
    await _store(db, ("definitions",), counts)


async def rewards(db: Db) -> None:
    counts: Counter[str] = Counter()

    def count(doc: dict[str, object]) -> None:
        counts[counter_keys.rewards(str(doc["tenant_id"]))] += 1

    await _walk(db, REWARDS.name, ["tenant_id"], count)
    await _store(db, ("rewards",), counts)


def _recount(name: str, what: str, work: Callable[[Db], Awaitable[None]]) -> Step:
    async def run(db: Db, progress: Progress) -> None:
        await work(db)

    async def needed(db: Db) -> bool:
        return True

    return Step(name, what, run, needed)


RECOUNTS = [
    _recount("0100_recount_spaces", "claims per code space", spaces),
    _recount("0100_recount_coupons", "coupons per definition", coupons),
    _recount("0100_recount_definitions", "definitions per tenant and status", definitions),
    _recount("0100_recount_rewards", "reward items per tenant", rewards),
    _recount("0105_recount_issued", "coupons issued per definition with a limit", issued),
]


async def run_all(db: Db, progress: Progress) -> None:
    for count in RECOUNTS:
        await count.run(db, progress)


async def needed(db: Db) -> bool:
    """Data stored by a version that kept no counts (none of them exists yet)."""
    for collection in (COUPONS.name, DEFINITIONS.name, REWARDS.name):
        if await db[collection].find_one({}, {"_id": 1}) is not None:
            break
    else:
        return False
    kinds = "^(codes|wallet|space|definitions|rewards):"
    return await db[COUNTERS.name].find_one({"_id": {"$regex": kinds}}, {"_id": 1}) is None


STEP = Step("0104_counts", "the kept counts of the data stored before them", run_all, needed)
