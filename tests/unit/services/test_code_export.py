"""The code export (services/code_export.py) on the fakes: every code once, in the list's
order across batches, each with its usage group's uses and last redemption; the 404s."""

import csv
import io
import json
from datetime import timedelta

import pytest

from phoenix_coupons.domain.errors import NotFound
from phoenix_coupons.services.code_export import FIELDS, CodeExport
from phoenix_coupons.services.redemptions import RedemptionService
from schemas.redemptions import RedeemRequest
from tests.fakes import EPOCH, Fakes, coupon
from tests.unit.services import given
from tests.unit.services.given import OTHER_TENANT, TENANT

pytestmark = pytest.mark.unit


async def test_every_code_once_in_order_with_its_uses() -> None:
    fk = Fakes()
    item = given.reward(fk)
    defn = given.definition(fk, item.item_id, usage_limit={"limit_type": "per_user", "max_uses": 2})
    stored = [
        coupon(
            f"k{i}",
            f"WIN-CODE{i}",
            TENANT,
            definition_id=defn.id,
            reward_item_id=item.item_id,
            user_id=f"u{i}",
            issued_at=EPOCH - timedelta(hours=5 - i),
        )
        for i in range(5)
    ]
    await fk.coupons.insert_atomic(stored)
    redeems = RedemptionService(
        fk.coupons,
        fk.definitions,
        fk.rewards,
        fk.redemptions,
        fk.clock,
        lambda: None,
        fk.lookups,
        fk.outbox,
    )
    await redeems.redeem(TENANT, RedeemRequest(code="WIN-CODE1", user_id="u1"), "key")
    last = fk.clock.advance(minutes=3)
    await redeems.redeem(TENANT, RedeemRequest(code="WIN-CODE1", user_id="u1"), "key")

    export = CodeExport(fk.coupons, fk.definitions, fk.redemptions, batch=2)
    run = await export.open(TENANT, defn.id, "csv")
    assert (run.total, run.filename) == (5, f"{defn.id}-codes.csv")
    chunks = [chunk async for chunk in run.chunks]
    assert len(chunks) == 1 + 3  # the header, then batches of 2, 2 and 1
    rows = list(csv.DictReader(io.StringIO(b"".join(chunks).decode(), newline="")))
    assert [r["code"] for r in rows] == [f"WIN-CODE{i}" for i in range(4, -1, -1)]  # newest first
    by_user = {r["user_id"]: r for r in rows}
    assert (by_user["u1"]["uses"], by_user["u1"]["last_redeemed_at"]) == (
        "2",
        last.isoformat().replace("+00:00", "Z"),
    )
    assert (by_user["u0"]["uses"], by_user["u0"]["last_redeemed_at"]) == ("0", "")

    run = await export.open(TENANT, defn.id, "jsonl")
    lines = [json.loads(line) for c in [c async for c in run.chunks] for line in c.splitlines()]
    assert [tuple(line) for line in lines] == [FIELDS] * 5
    assert [line["code"] for line in lines] == [r["code"] for r in rows]


async def test_unknown_definitions_and_other_tenants_are_not_found() -> None:
    fk = Fakes()
    defn = given.definition(fk, given.reward(fk).item_id)
    export = CodeExport(fk.coupons, fk.definitions, fk.redemptions)
    with pytest.raises(NotFound):
        await export.open(TENANT, "no-such-definition", "csv")
    with pytest.raises(NotFound):
        await export.open(OTHER_TENANT, defn.id, "csv")
    empty = await export.open(TENANT, defn.id, "jsonl")
    assert [c async for c in empty.chunks] == []
