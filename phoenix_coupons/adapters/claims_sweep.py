"""The claims sweep: settles code claims left unconfirmed longer than a grace period (a
write a crash or a refusal cut between the claim and its confirmation). B's sweeper calls
`sweep_claims` on its schedule; this module runs no loop.

A claim's coupon is read by `_id`: naming the same code -> confirm; missing or naming
another code -> release (delete the claim; its code-space count goes down). A definition's
shared code is settled against the definition, the last of its writes: a definition that
names the code gets its shared row (written again if the crash fell before it) and the claim
confirmed; otherwise the claim is released and a row naming it for a missing definition
goes too."""

from datetime import datetime, timedelta

import structlog

from phoenix_coupons.adapters.code_registry import UNCONFIRMED, split_id
from phoenix_coupons.adapters.coupon_repo import MongoCouponRepo, from_doc
from phoenix_coupons.adapters.definition_repo import MongoDefinitionRepo
from phoenix_coupons.adapters.definition_repo import from_doc as definition_from_doc
from phoenix_coupons.adapters.mongo import Doc, Mongo
from phoenix_coupons.adapters.mongo_schema import CLAIM_BATCHES, CODES
from phoenix_coupons.adapters.nx27017_compat import epoch_ms
from phoenix_coupons.domain import codes, issue_keys
from phoenix_coupons.domain.coupon_factory import CouponFactory
from phoenix_coupons.domain.models import Coupon

log = structlog.get_logger(__name__)
SWEEP_BATCH = 500


async def sweep_claims(mongo: Mongo, now: datetime, grace: timedelta) -> int:
    """Settle the claims unconfirmed since before `now - grace`; returns how many."""
    col = mongo.db[CODES.name]
    coupons = MongoCouponRepo(mongo)
    cursor = col.find({UNCONFIRMED: {"$lt": epoch_ms(now - grace)}}).limit(SWEEP_BATCH)
    claims = [d async for d in cursor]
    if not claims:
        return 0
    ids = sorted({c["coupon_id"] for c in claims})
    rows = {d["_id"]: from_doc(d) async for d in mongo.coupons.find({"_id": {"$in": ids}})}
    confirm: list[Coupon] = []
    release: list[Coupon] = []
    for claim in claims:
        tenant_id, code_norm = split_id(claim["_id"])
        stand_in = _claimant(claim, tenant_id, code_norm)
        if claim["coupon_id"] == _shared_id(claim):
            await _settle_shared(mongo, coupons, claim, stand_in, rows.get(claim["coupon_id"]))
            continue
        row = rows.get(claim["coupon_id"])
        if row is not None and row.tenant_id == tenant_id and row.code_norm == code_norm:
            confirm.append(row)
        else:
            release.append(stand_in)
    await coupons.codes.confirm(confirm)
    released = await coupons.codes.release(release)
    log.info("claims_swept", confirmed=len(confirm), released=released, seen=len(claims))
    return len(claims)


async def sweep_claim_batches(mongo: Mongo, now: datetime, grace: timedelta) -> int:
    """Settle the batches of claims open since before `now - grace` (their writer crashed,
    or stalled: it then finds its batch gone and checks its claims itself). Each batch is
    taken (deleted) first; a claim it made whose coupon is missing or names another code is
    released. Returns how many batches it settled."""
    batches = mongo.db[CLAIM_BATCHES.name]
    repo = MongoCouponRepo(mongo)
    before = epoch_ms(now - grace)
    old = [d async for d in batches.find({"at": {"$lt": before}}, {"_id": 1}).limit(100)]
    settled = 0
    for ref in old:
        batch = await batches.find_one_and_delete({"_id": ref["_id"]})
        if batch is None:  # closed by its writer, or taken by another sweep meanwhile
            continue
        settled += 1
        ours = set(batch.get("coupons", []))
        claims = [
            d
            async for d in mongo.db[CODES.name].find({"_id": {"$in": batch.get("claims", [])}})
            if d["coupon_id"] in ours  # a code another coupon held is not this batch's
        ]
        ids = [c["coupon_id"] for c in claims]
        rows = {d["_id"]: from_doc(d) async for d in mongo.coupons.find({"_id": {"$in": ids}})}
        release = []
        for claim in claims:
            tenant_id, code_norm = split_id(claim["_id"])
            row = rows.get(claim["coupon_id"])
            if row is None or row.tenant_id != tenant_id or row.code_norm != code_norm:
                release.append(_claimant(claim, tenant_id, code_norm))
        released = await repo.codes.release(release)
        log.info("claim_batch_swept", batch=batch["_id"], claims=len(claims), released=released)
    return settled


def _shared_id(claim: Doc) -> str:
    return issue_keys.coupon_id(issue_keys.shared(str(claim.get("definition_id"))))


def _claimant(claim: Doc, tenant_id: str, code_norm: str) -> Coupon:
    """The claim as the coupon it stands for (what release needs: tenant, code, id, space)."""
    return Coupon(
        id=claim["coupon_id"],
        tenant_id=tenant_id,
        definition_id=str(claim.get("definition_id")),
        reward_item_id="",
        code=code_norm,
        code_norm=code_norm,
        kind="shared",
        source="definition",
        issue_key="",
        issued_at=claim["claimed_at"],
        code_space=claim.get("code_space"),
    )


async def _settle_shared(
    mongo: Mongo, coupons: MongoCouponRepo, claim: Doc, stand_in: Coupon, row: Coupon | None
) -> None:
    doc = await mongo.definitions.find_one({"_id": claim.get("definition_id")})
    defn = None if doc is None else definition_from_doc(doc)
    code = defn.config.custom_code if defn is not None else None
    names = (
        defn is not None
        and defn.config.code_format == "custom"
        and code is not None
        and codes.normalize(code) == stand_in.code_norm
    )
    if names and defn is not None and code is not None:
        shared = CouponFactory.of(defn, "definition").coupon(
            issue_keys.shared(defn.id), code, defn.updated_at
        )
        await MongoDefinitionRepo(mongo, coupons).put_shared(defn.id, shared)
        return
    if row is not None and row.code_norm == stand_in.code_norm and defn is None:
        await coupons.undo([row])  # never confirmed, so never counted: no count to change
        return
    await coupons.codes.release([stand_in])
