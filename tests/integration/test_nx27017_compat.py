"""Each nx-27017 workaround does what the plain form does on MongoDB. Run on the session's
server: nx-27017 by default (the workaround is needed there), MongoDB with
PHOENIX_TEST_SERVERS=containers (the workaround must be harmless there). The expected rows
are computed here with MongoDB's documented semantics, not read from a server."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pymongo import AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from phoenix_coupons.adapters import nx27017_compat as nx
from phoenix_coupons.adapters.mongo_schema import ASC, DESC, Collection, Index
from phoenix_coupons.settings import Settings

Doc = dict[str, Any]
NOW = 1_000_000


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[AsyncDatabase[Doc]]:
    client: AsyncMongoClient[Doc] = AsyncMongoClient(settings.mongodb_uri, tz_aware=True)
    name = f"compat_{uuid.uuid4().hex[:8]}"
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


# --- timestamps -------------------------------------------------------------------------------


async def test_a_set_timestamp_reads_back_as_the_same_aware_datetime(
    db: AsyncDatabase[Doc],
) -> None:
    at = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    col = db["stamps"]
    await col.insert_one({"_id": "a", "inserted": at})
    await col.update_one({"_id": "a"}, {"$set": {"set": at}})
    doc = await col.find_one({"_id": "a"})
    assert doc is not None
    assert nx.aware(doc["inserted"]) == at == nx.aware(doc["set"])
    assert nx.aware(doc["set"]).tzinfo is not None


def test_aware_leaves_what_mongodb_answers_unchanged() -> None:
    at = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert nx.aware(at) is at
    assert nx.aware(None) is None
    assert nx.aware(at.replace(tzinfo=None)) == at
    assert nx.aware(at.astimezone(timezone(timedelta(hours=2)))) == at


def test_epoch_ms_is_exact_to_the_millisecond() -> None:
    at = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert nx.epoch_ms(at) == int(at.timestamp()) * 1000 + 678
    assert nx.epoch_ms(at + timedelta(milliseconds=1)) == nx.epoch_ms(at) + 1


# --- free leases and the update of an `$or` ---------------------------------------------------

ROWS: list[Doc] = [
    {"_id": "null", "pending": True, "lease": None},
    {"_id": "missing", "pending": True},
    {"_id": "expired", "pending": True, "lease": NOW - 1},
    {"_id": "live", "pending": True, "lease": NOW + 1},
    {"_id": "now", "pending": True, "lease": NOW},
    {"_id": "done-null", "pending": False, "lease": None},
    {"_id": "done-expired", "pending": False, "lease": NOW - 5},
    {"_id": "other-null", "pending": True, "lease": None},
    {"_id": "other-expired", "pending": True, "lease": 1},
]
CHOSEN = [r["_id"] for r in ROWS if not str(r["_id"]).startswith("other")]


def free_in_mongodb(row: Doc, ids: list[str]) -> bool:
    """MongoDB's meaning of {_id: {$in: ids}, pending: true, $or: [{lease: null},
    {lease: {$lt: NOW}}]}: null matches null and missing; $lt never matches null."""
    lease = row.get("lease")
    return row["_id"] in ids and row["pending"] is True and (lease is None or lease < NOW)


async def test_free_lease_finds_null_missing_and_run_out_leases(db: AsyncDatabase[Doc]) -> None:
    col = db["leases"]
    await col.insert_many([dict(r) for r in ROWS])
    query = {"_id": {"$in": CHOSEN}, "pending": True, **nx.free_lease("lease", NOW)}
    found = {d["_id"] async for d in col.find(query)}
    assert found == {r["_id"] for r in ROWS if free_in_mongodb(r, CHOSEN)}
    assert found == {"null", "missing", "expired"}


async def test_one_update_per_branch_updates_exactly_the_rows_the_or_matches(
    db: AsyncDatabase[Doc],
) -> None:
    col = db["claims"]
    await col.insert_many([dict(r) for r in ROWS])
    query = {"_id": {"$in": CHOSEN}, "pending": True, **nx.free_lease("lease", NOW)}
    await nx.update_many_or(col, query, {"$set": {"owner": "me", "lease": NOW + 30_000}})
    claimed = {d["_id"] async for d in col.find({"owner": "me"})}
    assert claimed == {r["_id"] for r in ROWS if free_in_mongodb(r, CHOSEN)}
    untouched = {d["_id"]: d.get("lease") async for d in col.find({"owner": {"$ne": "me"}})}
    assert untouched == {r["_id"]: r.get("lease") for r in ROWS if r["_id"] not in claimed}


async def test_an_or_without_disjoint_branches_is_refused(db: AsyncDatabase[Doc]) -> None:
    query = {"lease": {"$gt": 0}, "$or": [{"lease": None}, {"x": 1}]}
    with pytest.raises(ValueError, match="constrains"):
        await nx.update_many_or(db["refused"], query, {"$set": {"y": 1}})


# --- upsert by id -----------------------------------------------------------------------------


async def test_id_range_reads_what_the_plain_id_range_reads(db: AsyncDatabase[Doc]) -> None:
    """Two codes' steps: each code's range, skipped and limited, in `_id` order."""
    steps = [
        {"_id": f"t:{code}|{ms:04d}|issued", "code_norm": code}
        for code in ("C", "CD", "D")
        for ms in (30, 10, 20, 40)
    ]
    await db.steps.insert_many(steps)
    for code, above, below, skip, limit in (
        ("C", "t:C|", "t:C}", 0, 10),
        ("C", "t:C|0010", "t:C}", 1, 1),
        ("CD", "t:CD|0015", "t:CD|0040", 0, 5),
        ("D", "t:D|", "t:D}", 3, 5),
    ):
        plain = sorted(
            d["_id"] for d in steps if d["code_norm"] == code and above < d["_id"] < below
        )[skip : skip + limit]
        read = await nx.id_range(db.steps, above, below, skip, limit, ("code_norm", code))
        assert [d["_id"] for d in read] == plain, (code, above, below)


FOUND_IN: list[Doc] = [
    {"_id": "r1", "coupon_id": "a", "state": "redeemed"},
    {"_id": "r2", "coupon_id": "a", "state": "rolled_back"},
    {"_id": "r3", "coupon_id": "b", "state": "rolled_back"},
    {"_id": "r4", "coupon_id": "c", "state": "redeemed"},
    {"_id": "r5", "coupon_id": "c", "state": "redeemed"},
    {"_id": "r6", "coupon_id": "d", "state": "redeemed"},
    {"_id": "r7", "state": "redeemed"},
]


@pytest.mark.parametrize("on_nx", [False, True])
async def test_find_in_finds_what_the_plain_in_finds(db: AsyncDatabase[Doc], on_nx: bool) -> None:
    """Either form on the server at hand: each document once, the other conditions applied,
    values repeated or unknown harmless."""
    col = db["found_in"]
    await col.create_indexes([IndexModel([("coupon_id", 1)])])
    await col.insert_many([dict(r) for r in FOUND_IN])
    wanted = ["a", "c", "e", "a", "zz"]

    def matches(value: Any) -> bool:  # MongoDB's $in: an array matches by any element
        values = value if isinstance(value, list) else [value]
        return any(v in wanted for v in values)

    plain = {r["_id"] for r in FOUND_IN if matches(r.get("coupon_id")) and r["state"] == "redeemed"}
    found = await nx.find_in(col, "coupon_id", wanted, {"state": "redeemed"}, None, on_nx)
    assert sorted(d["_id"] for d in found) == sorted(plain) == ["r1", "r4", "r5"]
    assert {d["_id"]: d for d in found}["r4"] == FOUND_IN[3]
    assert await nx.find_in(col, "coupon_id", [], {}, None, on_nx) == []


async def test_replace_by_id_keeps_one_document_with_that_id(db: AsyncDatabase[Doc]) -> None:
    col = db["dead"]
    await nx.replace_by_id(col, "coupon.issued:c-1", {"reason": "too_large", "n": 1})
    await nx.replace_by_id(col, "coupon.issued:c-1", {"reason": "rejected", "n": 2})
    docs = [d async for d in col.find({})]
    assert docs == [{"_id": "coupon.issued:c-1", "reason": "rejected", "n": 2}]


# --- indexes ----------------------------------------------------------------------------------


def test_indexes_as_nx27017_serves_them() -> None:
    declared = Collection(
        "c",
        (Index((("tenant_id", ASC), ("created_at", DESC), ("_id", ASC))), Index((("_id", ASC),))),
        retired=((("tenant_id", ASC), ("created_at", DESC)),),
    )
    served = nx.as_served(declared)
    # Without the `_id` tie-breaker, ascending, and by its first key alone (nx-27017 never
    # uses a compound index): the compound form is retired.
    assert [i.keys for i in served.indexes] == [(("tenant_id", 1),), (("_id", 1),)]
    assert served.retired == ((("tenant_id", 1), ("created_at", 1)),)
    reported = {"i": {"key": [("tenant_id", 1), ("created_at", -1)], "unique": True}}
    assert nx.as_reported(reported) == {
        "i": {"key": [("tenant_id", 1), ("created_at", 1)], "unique": True}
    }


def test_compound_indexes_are_served_by_their_first_key_unless_unique() -> None:
    declared = Collection(
        "c",
        (
            Index((("a", ASC), ("t", DESC))),
            Index((("a", ASC), ("s", ASC))),
            Index((("u", ASC), ("v", ASC)), unique=True),
        ),
    )
    served = nx.as_served(declared)
    assert [(i.keys, i.unique) for i in served.indexes] == [
        ((("a", 1),), False),
        ((("u", 1), ("v", 1)), True),  # its first key alone would refuse what it allows
    ]
    assert served.retired == ((("a", 1), ("t", 1)), (("a", 1), ("s", 1)))


def test_the_server_is_told_apart_by_its_build_info() -> None:
    """The index workarounds apply on nx-27017 only: it names itself in buildInfo."""
    assert nx.is_nx27017({"process": "nx_27017", "version": "7.0.0"})
    assert not nx.is_nx27017({"version": "7.0.14", "gitVersion": "ce59cfc6"})  # mongod's


class RecordingDatabase:
    """Records the commands `set_ttl` sends (the decision; the effect is checked on the
    server at hand by test_mongo_indexes.py)."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def command(self, command: Doc) -> Doc:
        self.sent.append(("command", command))
        return {"ok": 1}

    def __getitem__(self, name: str) -> "RecordingDatabase":
        return self

    async def create_indexes(self, models: list[Any]) -> list[str]:
        self.sent.append(("createIndexes", [m.document for m in models]))
        return ["created_at_1"]


@pytest.mark.parametrize(("on_nx", "sent"), [(False, "command"), (True, "createIndexes")])
async def test_a_ttl_is_changed_with_collmod_on_mongodb(on_nx: bool, sent: str) -> None:
    index = Index((("created_at", ASC),), expire_after_seconds=60)
    db = RecordingDatabase()
    await nx.set_ttl(db, "idempotency_keys", index, IndexModel([("created_at", 1)]), on_nx)  # type: ignore[arg-type]
    assert [kind for kind, _ in db.sent] == [sent]
    if not on_nx:
        assert db.sent[0][1] == {
            "collMod": "idempotency_keys",
            "index": {"keyPattern": {"created_at": 1}, "expireAfterSeconds": 60},
        }


# --- each workaround is still needed: the plain form is still wrong on nx-27017 0.8.1 ----------
# A failure here means nx-27017 fixed it: remove the workaround and this test.


@pytest.fixture
async def on_nx(db: AsyncDatabase[Doc]) -> AsyncDatabase[Doc]:
    if not nx.is_nx27017(await db.client.admin.command("buildInfo")):
        pytest.skip("the plain form is right on MongoDB")
    return db


async def test_still_needed_a_set_datetime_becomes_a_string(on_nx: AsyncDatabase[Doc]) -> None:
    await on_nx["s"].insert_one({"_id": 1})
    await on_nx["s"].update_one({"_id": 1}, {"$set": {"at": datetime.now(UTC)}})
    doc = await on_nx["s"].find_one({"_id": 1})
    assert doc is not None and isinstance(doc["at"], str)


async def test_still_needed_or_matches_a_bare_none_only_when_missing(
    on_nx: AsyncDatabase[Doc],
) -> None:
    await on_nx["o"].insert_many([{"_id": "null", "f": None}, {"_id": "missing"}])
    found = {d["_id"] async for d in on_nx["o"].find({"$or": [{"f": None}, {"f": 1}]})}
    assert found == {"missing"}


async def test_still_needed_update_many_or_ignores_the_other_conditions(
    on_nx: AsyncDatabase[Doc],
) -> None:
    col = on_nx["u"]
    await col.insert_many([dict(r) for r in ROWS])
    query = {"_id": {"$in": CHOSEN}, "pending": True, **nx.free_lease("lease", NOW)}
    await col.update_many(query, {"$set": {"owner": "me"}})
    claimed = {d["_id"] async for d in col.find({"owner": "me"})}
    assert claimed != {r["_id"] for r in ROWS if free_in_mongodb(r, CHOSEN)}


async def test_still_needed_an_upsert_ignores_the_filters_id(on_nx: AsyncDatabase[Doc]) -> None:
    await on_nx["r"].replace_one({"_id": "k"}, {"v": 1}, upsert=True)
    assert await on_nx["r"].find_one({"_id": "k"}) is None


async def test_still_needed_no_id_in_a_compound_index(on_nx: AsyncDatabase[Doc]) -> None:
    col = on_nx["i"]
    await col.create_indexes([IndexModel([("a", 1), ("b", -1), ("_id", 1)])])
    with pytest.raises(BulkWriteError, match="_id"):
        await col.insert_many([{"_id": 1, "a": 1, "b": 1}])
    keys = [i["key"] for i in (await col.index_information()).values()]
    assert [("a", 1), ("b", 1)] in keys, "reported without `_id` and without direction"


async def test_still_needed_an_in_scans_where_an_equality_uses_the_index(
    on_nx: AsyncDatabase[Doc],
) -> None:
    col = on_nx["scan"]
    await col.create_indexes([IndexModel([("f", 1)])])
    await col.insert_many([{"_id": i, "f": f"v{i}"} for i in range(20)])

    async def plan(query: Doc) -> str:
        return str((await col.find(query).explain())["queryPlanner"]["winningPlan"])

    assert "USING INDEX" in await plan({"f": "v1"})
    assert "USING INDEX" not in await plan({"f": {"$in": ["v1", "v2"]}})


async def test_still_needed_collmod_leaves_a_ttl_unchanged(on_nx: AsyncDatabase[Doc]) -> None:
    col = on_nx["t"]
    await col.create_indexes([IndexModel([("at", 1)], expireAfterSeconds=100)])
    ttl = {"keyPattern": {"at": 1}, "expireAfterSeconds": 50}
    await on_nx.command({"collMod": "t", "index": ttl})
    ttls = [i.get("expireAfterSeconds") for i in (await col.index_information()).values()]
    assert 100 in ttls and 50 not in ttls
