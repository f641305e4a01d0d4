"""Step 0300 on the session's MongoDB: API keys stored by id (with a unique `key_hash`
index) move to `_id` = their hash, through a crash between a batch's inserts and its deletes,
and a second run changes nothing; the repository then finds, authenticates and revokes them."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from phoenix_coupons.adapters.api_key_repo import MongoApiKeyRepo
from phoenix_coupons.adapters.migrations import api_keys_by_hash, migrate, pending
from phoenix_coupons.adapters.mongo import Doc, Mongo
from phoenix_coupons.adapters.mongo_schema import keys_of
from phoenix_coupons.settings import Settings
from tests.integration.migration_support import Crash
from tests.integration.test_api_key_cli import base_env, phoenix_coupons

STEP = api_keys_by_hash.STEP
AT = datetime(2025, 3, 1, 12, tzinfo=UTC)


@pytest.fixture
def mongo(own_mongo: Mongo) -> Mongo:
    return own_mongo


def old_key(n: int) -> Doc:
    """A key as the earlier version stored it."""
    return {
        "_id": f"00000000-0000-4000-8000-{n:012d}",
        "name": f"key {n}",
        "scopes": ["coupons:read"],
        "tenant_id": "acme" if n % 2 else None,
        "key_hash": f"{n:064x}",
        "secret_enc": f"v1:secret{n}",
        "created_at": AT.replace(minute=n),
        "revoked_at": AT if n == 3 else None,
    }


async def test_keys_move_to_their_hash_through_a_crash_and_a_second_run(
    mongo: Mongo, monkeypatch: pytest.MonkeyPatch
) -> None:
    col = mongo.api_keys
    await col.create_index("key_hash", unique=True)
    await col.insert_many([old_key(n) for n in range(8)])
    assert await pending(mongo.db, [STEP]) == [STEP.name]

    # Cut in the second batch, between its inserts and its deletes.
    monkeypatch.setattr(api_keys_by_hash, "size", 3)
    delete_old = api_keys_by_hash.delete_old
    calls = [0]

    async def crashing(c: object, docs: list[Doc]) -> None:
        calls[0] += 1
        if calls[0] == 2:
            raise Crash
        await delete_old(col, docs)

    monkeypatch.setattr(api_keys_by_hash, "delete_old", crashing)
    with pytest.raises(Crash):
        await migrate(mongo.db, [STEP])
    assert await col.count_documents({"key_id": {"$exists": True}}) == 6  # batches 1 and 2
    assert await col.count_documents({"key_id": {"$exists": False}}) == 5  # batches 2 and 3

    report = await migrate(mongo.db, [STEP])
    assert [(s.state, s.migrated) for s in report.steps] == [("done", 8)]
    docs = [d async for d in col.find().sort("key_id", 1)]
    assert docs == [
        {
            k: v
            for k, v in {**old, "_id": old["key_hash"], "key_id": old["_id"]}.items()
            if k != "key_hash"
        }
        for old in (old_key(n) for n in range(8))
    ]
    again = await migrate(mongo.db, [STEP])
    assert [s.state for s in again.steps] == ["done before"]
    await mongo.db.migrations.delete_many({})  # even from the start: nothing left to move
    assert await pending(mongo.db, [STEP]) == []

    await mongo.ensure_indexes()
    indexes = [keys_of(i) for i in (await col.index_information()).values()]
    assert (("key_id", 1),) in indexes and (("key_hash", 1),) not in indexes
    repo = MongoApiKeyRepo(mongo)
    found = await repo.by_hash(f"{5:064x}")
    assert found is not None and found.id == old_key(5)["_id"] and found.tenant_id == "acme"
    assert await repo.get(old_key(5)["_id"]) == found
    assert (await repo.get(old_key(3)["_id"]) or found).revoked_at == AT
    assert await repo.revoke(found.id, AT) is True
    assert await repo.revoke(found.id, AT) is False
    assert [k.id for k in await repo.all()] == [old_key(n)["_id"] for n in range(8)]


async def test_the_operator_migrates_before_the_service_uses_old_keys(
    mongo: Mongo, settings: Settings, tmp_path: Path
) -> None:
    """The upgrade order of docs/operations.md: the new version refuses the old layout,
    `phoenix-coupons migrate` moves it, a second run does nothing, the keys then work."""
    await mongo.api_keys.create_index("key_hash", unique=True)
    await mongo.api_keys.insert_many([old_key(n) for n in range(3)])
    assert settings.mongodb_uri
    env = {
        **base_env(settings, tmp_path),
        "MONGODB_URI": settings.mongodb_uri,
        "PHOENIX_MONGODB_DATABASE": mongo.db.name,
    }

    refused = await phoenix_coupons(env, "api-key", "list")
    assert refused.code == 2
    assert "run `phoenix-coupons migrate`" in refused.err and STEP.name in refused.err

    report = (await phoenix_coupons(env, "migrate")).json()
    ours = [s for s in report["steps"] if s["name"] == STEP.name]
    assert ours == [{"name": STEP.name, "state": "done", "migrated": 3}]
    # The others found nothing to do (the refusal above already marked them so).
    others = {s["state"] for s in report["steps"] if s["name"] != STEP.name}
    assert others <= {"not needed", "done before"}
    again = (await phoenix_coupons(env, "migrate", "--recount")).json()
    assert {s["state"] for s in again["steps"]} == {"done before"}
    assert next(s for s in again["steps"] if s["name"] == STEP.name)["migrated"] == 3

    listed = (await phoenix_coupons(env, "api-key", "list")).json()
    assert [k["id"] for k in listed] == [old_key(n)["_id"] for n in range(3)]
    revoked = (await phoenix_coupons(env, "api-key", "revoke", old_key(1)["_id"])).json()
    assert revoked == {"id": old_key(1)["_id"], "revoked": True}
