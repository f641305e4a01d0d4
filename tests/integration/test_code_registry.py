"""The code registry (`codes`, `_id = "<tenant>:<code_norm>"`) in place of the coupons'
(tenant_id, code_norm) unique index: claim before insert, confirm after, release on undo;
by_code, revoke and taken through it; the code-space count kept with the claims; the sweep of
claims a crash left unconfirmed."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from phoenix_coupons.adapters import counter_keys
from phoenix_coupons.adapters.claims_sweep import sweep_claim_batches, sweep_claims
from phoenix_coupons.adapters.code_registry import claim_doc, claim_id
from phoenix_coupons.adapters.counters import MongoCounters
from phoenix_coupons.adapters.coupon_repo import MongoCouponRepo, to_doc
from phoenix_coupons.adapters.nx27017_compat import epoch_ms
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.errors import DuplicateCodes
from phoenix_coupons.domain.models import Coupon

SPACE = "A-Z0-9:8"
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def coupon(tenant: str, code: str, key: str | None = None, user: str = "user-1") -> Coupon:
    key = key or f"bulk:{uuid.uuid4().hex}"
    return Coupon(
        id=issue_keys.coupon_id(key),
        tenant_id=tenant,
        definition_id="def-1",
        reward_item_id="reward-1",
        code=code,
        code_norm=code.upper(),
        kind="issued",
        source="bulk",
        issue_key=key,
        issued_at=datetime.now(UTC),
        user_id=user,
        code_space=SPACE,
    )


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def repo(container: Container) -> MongoCouponRepo:
    return MongoCouponRepo(container.mongo)


async def claims(container: Container, tenant: str) -> dict[str, dict[str, object]]:
    cursor = container.mongo.db["codes"].find({"_id": {"$regex": f"^{tenant}:"}})
    return {d["_id"]: d async for d in cursor}


async def space(container: Container, tenant: str) -> int:
    return await MongoCounters(container.mongo).get(counter_keys.space(tenant, SPACE))


async def test_a_code_is_claimed_once_per_tenant_and_confirmed(
    container: Container, repo: MongoCouponRepo, tenant: str
) -> None:
    first, same, other = (
        coupon(tenant, "CODEAAAA"),
        coupon(tenant, "codeaaaa"),
        coupon(tenant, "CODEBBBB"),
    )
    assert await repo.insert_unordered([first, same, other]) == [1]
    elsewhere = coupon(f"{tenant}-x", "CODEAAAA")
    assert await repo.insert_unordered([elsewhere]) == []
    stored = await claims(container, tenant)
    assert set(stored) == {claim_id(tenant, "CODEAAAA"), claim_id(tenant, "CODEBBBB")}
    assert stored[claim_id(tenant, "CODEAAAA")]["coupon_id"] == first.id
    assert all("unconfirmed" not in c for c in stored.values())
    assert await repo.taken(tenant, ["CODEAAAA", "CODECCCC"]) == {"CODEAAAA"}
    assert await repo.count_in_space(tenant, SPACE) == 2
    found = await repo.by_code(tenant, "CODEAAAA")
    assert found is not None and found.id == first.id
    assert await container.mongo.coupons.find_one({"_id": same.id}) is None


async def test_insert_atomic_leaves_nothing_behind_on_a_taken_code(
    container: Container, repo: MongoCouponRepo, tenant: str
) -> None:
    await repo.insert_atomic([coupon(tenant, "TAKEN001")])
    batch = [coupon(tenant, "FREE0001"), coupon(tenant, "taken001"), coupon(tenant, "FREE0002")]
    with pytest.raises(DuplicateCodes):
        await repo.insert_atomic(batch)
    assert set(await claims(container, tenant)) == {claim_id(tenant, "TAKEN001")}
    assert await container.mongo.coupons.count_documents({"tenant_id": tenant}) == 1
    assert await repo.count_in_space(tenant, SPACE) == 1


async def test_insert_atomic_leaves_nothing_behind_on_an_issue_key_stored_before(
    container: Container, repo: MongoCouponRepo, tenant: str
) -> None:
    key = f"bulk:{uuid.uuid4().hex}"
    stored = coupon(tenant, "FIRST001", key)
    await repo.insert_atomic([stored])
    batch = [coupon(tenant, "NEW00001"), coupon(tenant, "SECOND01", key)]
    with pytest.raises(DuplicateCodes):
        await repo.insert_atomic(batch)
    assert set(await claims(container, tenant)) == {claim_id(tenant, "FIRST001")}
    assert await container.mongo.coupons.count_documents({"tenant_id": tenant}) == 1
    assert await repo.count_in_space(tenant, SPACE) == 1


async def test_the_retry_of_an_issue_key_reuses_the_claim_a_crash_left(
    container: Container, repo: MongoCouponRepo, tenant: str
) -> None:
    wanted = coupon(tenant, "CRASHED1")
    await container.mongo.db["codes"].insert_one(claim_doc(wanted, LONG_AGO))  # then a crash
    assert await repo.insert_unordered([wanted]) == []
    assert (await repo.by_code(tenant, "CRASHED1")) is not None
    assert "unconfirmed" not in (await claims(container, tenant))[claim_id(tenant, "CRASHED1")]


async def test_deleting_a_coupon_releases_its_code(
    container: Container, repo: MongoCouponRepo, tenant: str
) -> None:
    gone = coupon(tenant, "DELETE01")
    await repo.insert_atomic([gone])
    counters = MongoCounters(container.mongo)
    assert await counters.get(counter_keys.codes(tenant, "def-1")) == 1
    deleted = await repo.delete_by_issue_key(gone.issue_key)
    assert deleted is not None and deleted.id == gone.id
    assert await repo.taken(tenant, ["DELETE01"]) == set()
    assert await repo.count_in_space(tenant, SPACE) == 0
    assert await counters.get(counter_keys.codes(tenant, "def-1")) == 0
    assert await counters.get(counter_keys.wallet(tenant, "user-1")) == 0
    await repo.insert_atomic([coupon(tenant, "DELETE01")])  # free again


async def test_a_claim_without_its_coupon_is_an_unknown_code(
    container: Container, repo: MongoCouponRepo, tenant: str
) -> None:
    orphan = coupon(tenant, "ORPHAN01")
    await container.mongo.db["codes"].insert_one(claim_doc(orphan, datetime.now(UTC)))
    assert await repo.by_code(tenant, "ORPHAN01") is None
    assert await repo.revoke(tenant, "ORPHAN01", datetime.now(UTC)) is None
    renamed = coupon(tenant, "RENAMED1")
    await container.mongo.coupons.insert_one(to_doc(renamed))
    await container.mongo.db["codes"].insert_one(
        {**claim_doc(renamed, datetime.now(UTC)), "_id": claim_id(tenant, "OLDNAME1")}
    )
    assert await repo.by_code(tenant, "OLDNAME1") is None


async def test_revoke_goes_through_the_registry(repo: MongoCouponRepo, tenant: str) -> None:
    await repo.insert_atomic([coupon(tenant, "REVOKE01")])
    at = datetime.now(UTC)
    revoked = await repo.revoke(tenant, "REVOKE01", at)
    assert revoked is not None and revoked.status == "revoked"
    again = await repo.revoke(tenant, "REVOKE01", at + timedelta(seconds=5))
    assert again is not None and again.revoked_at == revoked.revoked_at
    assert await repo.revoke(tenant, "UNKNOWN1", at) is None


async def test_the_sweep_releases_stale_claims_without_coupons_and_confirms_the_others(
    container: Container, repo: MongoCouponRepo, tenant: str
) -> None:
    codes = container.mongo.db["codes"]
    lost, landed, young = (
        coupon(tenant, "LOST0001"),
        coupon(tenant, "LANDED01"),
        coupon(tenant, "YOUNG001"),
    )
    claimed = await repo.codes.claim([lost, landed, young], LONG_AGO)
    assert claimed.new == {0, 1, 2} and await repo.count_in_space(tenant, SPACE) == 3
    # In epoch ms, which the sweep's range compares (a datetime range scans on nx-27017).
    stored = await claims(container, tenant)
    assert {c["unconfirmed"] for c in stored.values()} == {epoch_ms(LONG_AGO)}
    await codes.update_one(
        {"_id": claim_id(tenant, "YOUNG001")},
        {"$set": {"unconfirmed": epoch_ms(datetime.now(UTC))}},
    )
    await container.mongo.coupons.insert_one(to_doc(landed))  # crash before its confirm
    assert await sweep_claims(container.mongo, datetime.now(UTC), timedelta(minutes=5)) >= 2
    left = await claims(container, tenant)
    assert set(left) == {claim_id(tenant, "LANDED01"), claim_id(tenant, "YOUNG001")}
    assert "unconfirmed" not in left[claim_id(tenant, "LANDED01")]
    assert "unconfirmed" in left[claim_id(tenant, "YOUNG001")]
    assert await repo.count_in_space(tenant, SPACE) == 2


async def test_a_batch_claims_its_codes_confirmed_and_leaves_no_open_batch(
    container: Container, repo: MongoCouponRepo, tenant: str
) -> None:
    batch = [coupon(tenant, f"BATCH{n:03d}") for n in range(5)]
    assert await repo.insert_unordered(batch) == []
    stored = await claims(container, tenant)
    assert len(stored) == 5 and all("unconfirmed" not in c for c in stored.values())
    open_batches = container.mongo.db["claim_batches"]
    assert await open_batches.find_one({"coupons": {"$in": [c.id for c in batch]}}) is None


async def test_the_sweep_releases_the_claims_of_a_batch_a_crash_left_open(
    container: Container, repo: MongoCouponRepo, tenant: str
) -> None:
    landed, lost = coupon(tenant, "OPEN0001"), coupon(tenant, "OPEN0002")
    held = coupon(tenant, "HELD0001")
    await repo.insert_unordered([held])
    # A batch claimed two codes (a third was held by another coupon), stored one, crashed.
    rival = coupon(tenant, "HELD0001")
    await repo.codes.open_batch([landed, lost, rival], LONG_AGO)
    await repo.codes.claim([landed, lost, rival], LONG_AGO, unconfirmed=False)
    await container.mongo.coupons.insert_one(to_doc(landed))
    settled = await sweep_claim_batches(container.mongo, datetime.now(UTC), timedelta(minutes=5))
    assert settled >= 1
    assert set(await claims(container, tenant)) == {
        claim_id(tenant, "OPEN0001"),
        claim_id(tenant, "HELD0001"),
    }
    assert (await repo.by_code(tenant, "HELD0001")) is not None
    assert await repo.count_in_space(tenant, SPACE) == 2


async def test_a_writer_whose_batch_a_sweep_took_over_claims_its_codes_again(
    container: Container, repo: MongoCouponRepo, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write stalled past the grace period: the sweep releases its claims before its
    coupons are in; the writer finds its batch gone and claims again (the code free) or
    gives the coupon up (the code taken meanwhile: a refused position, drawn again)."""
    free, taken = coupon(tenant, "STALL001"), coupon(tenant, "STALL002")
    col = container.mongo.coupons  # a new collection object each time: keep this one
    insert_many = col.insert_many
    calls = [0]

    async def stalled(docs: object, **kwargs: object) -> object:
        calls[0] += 1
        if calls[0] == 1:  # the stall: a sweep runs, another writer takes one code
            await sweep_claim_batches(container.mongo, datetime.now(UTC), timedelta(0))
            await repo.insert_atomic([coupon(tenant, "STALL002")])
        return await insert_many(docs, **kwargs)

    monkeypatch.setattr(col, "insert_many", stalled, raising=False)
    monkeypatch.setattr(repo, "_col", col)
    assert await repo.insert_unordered([free, taken]) == [1]
    held = {k: v["coupon_id"] for k, v in (await claims(container, tenant)).items()}
    assert held[claim_id(tenant, "STALL001")] == free.id
    assert held[claim_id(tenant, "STALL002")] != taken.id
    assert await container.mongo.coupons.find_one({"_id": taken.id}) is None
