"""The code export through the HTTP API: every code of a definition as CSV and JSON Lines,
the same rows in both, in the list's order across batches; `uses` and `last_redeemed_at`
from the usage group's kept count; the headers; scopes, tenants, 404 and 422."""

import csv
import io
import json
from typing import Any

import httpx
import pytest

from phoenix_coupons.adapters.coupon_repo import MongoCouponRepo
from phoenix_coupons.adapters.definition_repo import MongoDefinitionRepo
from phoenix_coupons.adapters.redemption_repo import MongoRedemptionRepo
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.services.code_export import FIELDS, CodeExport
from tests.conftest import KeyFactory
from tests.integration.test_coupon_queries import PER_USER_2
from tests.integration.test_redemption import UNLIMITED, Tenant

Json = dict[str, Any]
GLOBAL_5 = {"limit_type": "global", "max_uses": 5}


@pytest.fixture
def api(client: httpx.AsyncClient, admin: Json, reward: Json, tenant: str) -> Tenant:
    """This test's tenant through the API (as in test_coupon_queries.py)."""
    return Tenant(client, tenant, admin["headers"], reward)


async def export(
    api: Tenant, definition_id: str, fmt: str | None = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    query = "" if fmt is None else f"?format={fmt}"
    return await api.client.get(
        f"{api.base}/coupons/{definition_id}/codes/export{query}",
        headers=api.headers if headers is None else headers,
    )


def csv_rows(text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    assert tuple(reader.fieldnames or ()) == FIELDS
    return list(reader)


async def listed_codes(api: Tenant, definition_id: str) -> list[str]:
    response = await api.client.get(
        f"{api.base}/coupons/{definition_id}/codes?limit=100", headers=api.headers
    )
    assert response.status_code == 200, response.text
    return [c["code"] for c in response.json()["coupons"]]


async def test_every_code_as_csv_and_jsonl_with_its_uses(api: Tenant) -> None:
    defn = await api.define(limit=PER_USER_2)
    response = await api.client.post(
        f"{api.base}/coupons/{defn['id']}/generate",
        json={"user_ids": ["ann", "bob", "cid"], "metadata": {"batch": "mail-1", "n": 3}},
        headers=api.headers,
    )
    assert response.status_code == 201, response.text
    issued = {c["user_id"]: c["code"] for c in response.json()["coupons"]}
    first = await api.redeemed(issued["ann"], "ann")
    second = await api.redeemed(issued["ann"], "ann")

    as_csv = await export(api, defn["id"])
    assert as_csv.status_code == 200, as_csv.text
    assert as_csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert as_csv.headers["content-disposition"] == (
        f'attachment; filename="{defn["id"]}-codes.csv"'
    )
    assert as_csv.headers["x-total-count"] == "3"
    rows = csv_rows(as_csv.text)
    assert [r["code"] for r in rows] == await listed_codes(api, defn["id"])
    by_user = {r["user_id"]: r for r in rows}
    assert {u: r["code"] for u, r in by_user.items()} == issued
    ann = by_user["ann"]
    assert (ann["kind"], ann["status"], ann["uses"]) == ("issued", "active", "2")
    assert ann["last_redeemed_at"] == max(first["redeemed_at"], second["redeemed_at"])
    assert json.loads(ann["metadata"]) == {"batch": "mail-1", "n": 3}
    assert (by_user["bob"]["uses"], by_user["bob"]["last_redeemed_at"]) == ("0", "")

    as_jsonl = await export(api, defn["id"], "jsonl")
    assert as_jsonl.status_code == 200, as_jsonl.text
    assert as_jsonl.headers["content-type"] == "application/x-ndjson"
    assert as_jsonl.headers["content-disposition"].endswith('-codes.jsonl"')
    lines = [json.loads(line) for line in as_jsonl.text.splitlines()]
    assert [tuple(line) for line in lines] == [FIELDS] * 3
    assert [line["code"] for line in lines] == [r["code"] for r in rows]
    ann_line = next(line for line in lines if line["user_id"] == "ann")
    assert (ann_line["uses"], ann_line["metadata"]) == (2, {"batch": "mail-1", "n": 3})
    # The same values in both formats (CSV writes null as an empty cell, numbers as text).
    for line, r in zip(lines, rows, strict=True):
        text = {k: "" if v is None else v for k, v in line.items()}
        text["uses"] = str(line["uses"])
        text["metadata"] = json.dumps(line["metadata"], separators=(",", ":"))
        assert text == r


async def test_uses_follow_the_usage_group(api: Tenant) -> None:
    """Global: the definition's uses on every code; unlimited: none kept (empty); a rollback
    gives its use back but keeps the time of the last redemption."""
    shared = await api.define("EXPORTSHARED", GLOBAL_5)
    await api.redeemed("EXPORTSHARED", "u1")
    last = await api.redeemed("EXPORTSHARED", "u2")
    rolled = await api.client.post(
        f"{api.base}/coupons/redemptions/{last['redemption_id']}/rollback", headers=api.headers
    )
    assert rolled.status_code == 200, rolled.text
    [row] = csv_rows((await export(api, shared["id"])).text)
    assert (row["code"], row["kind"], row["user_id"]) == ("EXPORTSHARED", "shared", "")
    assert (row["uses"], row["last_redeemed_at"]) == ("1", last["redeemed_at"])

    # A hold counts as a use while open; its confirm is a redemption, whose time is kept.
    held = await api.define("EXPORTHELD", GLOBAL_5)
    hold = await api.client.post(
        f"{api.base}/coupons/reserve",
        json={"code": "EXPORTHELD", "user_id": "u3", "ttl_seconds": 120},
        headers=api.headers,
    )
    assert hold.status_code == 201, hold.text
    [row] = csv_rows((await export(api, held["id"])).text)
    assert (row["uses"], row["last_redeemed_at"]) == ("1", "")
    confirmed = await api.client.post(
        f"{api.base}/coupons/reservations/{hold.json()['reservation_id']}/confirm",
        headers=api.headers,
    )
    assert confirmed.status_code == 201, confirmed.text
    [row] = csv_rows((await export(api, held["id"])).text)
    assert (row["uses"], row["last_redeemed_at"]) == ("1", confirmed.json()["redeemed_at"])

    free = await api.define(limit=UNLIMITED)
    issued = await api.generate(free["id"], ["ann"])
    await api.redeemed(issued["ann"], "ann")
    [row] = csv_rows((await export(api, free["id"])).text)
    assert (row["uses"], row["last_redeemed_at"]) == ("", "")


async def test_batches_keep_the_list_order(api: Tenant, container: Container) -> None:
    defn = await api.define()
    await api.generate(defn["id"], [f"user-{i}" for i in range(7)])
    coupons = MongoCouponRepo(container.mongo)
    small = CodeExport(
        coupons,
        MongoDefinitionRepo(container.mongo, coupons),
        MongoRedemptionRepo(container.mongo),
        batch=2,
    )
    run = await small.open(api.id, defn["id"], "jsonl")
    chunks = [chunk async for chunk in run.chunks]
    assert len(chunks) == 4  # 2 + 2 + 2 + 1
    codes = [json.loads(line)["code"] for c in chunks for line in c.decode().splitlines()]
    assert codes == await listed_codes(api, defn["id"])
    assert run.total == 7


async def test_refusals(api: Tenant, make_key: KeyFactory, tenant: str) -> None:
    defn = await api.define()
    unknown = await export(api, "no-such-definition")
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "definition_not_found"
    bad = await export(api, defn["id"], "xml")
    assert bad.status_code == 422
    assert [d["field"] for d in bad.json()["details"]] == ["format"]
    redeemer = await make_key(scopes="coupons:redeem", tenant=tenant)
    assert (await export(api, defn["id"], headers=redeemer["headers"])).status_code == 403
    reader = await make_key(scopes="coupons:read", tenant=tenant)
    assert (await export(api, defn["id"], headers=reader["headers"])).status_code == 200
    other = await make_key(scopes="coupons:read", tenant="another-tenant")
    assert (await export(api, defn["id"], headers=other["headers"])).status_code == 403
    assert (await export(api, defn["id"], headers={})).status_code == 401
