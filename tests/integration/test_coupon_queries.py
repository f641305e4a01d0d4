"""Coupon queries through the HTTP API: a definition's codes (paginated, filtered by
user), a user's wallet with the uses left, one code's state and redemption history, revoking a
code; scopes, tenant isolation and the 404s."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import KeyFactory
from tests.integration.test_redemption import UNLIMITED, Tenant, at, refused

Json = dict[str, Any]
PER_USER_2 = {"limit_type": "per_user", "max_uses": 2}
GLOBAL_3 = {"limit_type": "global", "max_uses": 3}


@pytest.fixture
def api(client: httpx.AsyncClient, admin: Json, reward: Json, tenant: str) -> Tenant:
    return Tenant(client, tenant, admin["headers"], reward)


async def get(api: Tenant, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return await api.client.get(
        f"{api.base}{path}", headers=api.headers if headers is None else headers
    )


async def got(api: Tenant, path: str) -> Json:
    response = await get(api, path)
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


async def remaining(api: Tenant, user: str) -> dict[str, int | None]:
    """code -> remaining_uses of the user's wallet."""
    wallet = await got(api, f"/users/{user}/coupons")
    assert wallet["user_id"] == user
    assert wallet["total"] == len(wallet["coupons"])
    return {c["code"]: c["remaining_uses"] for c in wallet["coupons"]}


# --- a definition's codes --------------------------------------------------------------------


async def test_a_definitions_codes_are_paginated(api: Tenant) -> None:
    defn = await api.define()
    users = [f"user-{i}" for i in range(5)]
    issued = await api.generate(defn["id"], users)
    pages = [
        await got(api, f"/coupons/{defn['id']}/codes?limit=2&offset={offset}")
        for offset in (0, 2, 4, 6)
    ]
    assert [p["total"] for p in pages] == [5, 5, 5, 5]
    assert [len(p["coupons"]) for p in pages] == [2, 2, 1, 0]
    listed = [c for p in pages for c in p["coupons"]]
    assert {c["user_id"]: c["code"] for c in listed} == issued
    assert len({c["id"] for c in listed}) == 5
    for c in listed:
        assert c["tenant_id"] == api.id
        assert c["definition_id"] == defn["id"]
        assert c["reward_item_id"] == api.reward["item_id"]
        assert (c["kind"], c["source"], c["status"]) == ("issued", "bulk", "active")
        assert c["revoked_at"] is None
    whole = await got(api, f"/coupons/{defn['id']}/codes")
    assert [c["id"] for c in whole["coupons"]] == [c["id"] for c in listed]


async def test_a_definitions_codes_are_filtered_by_user_newest_first(api: Tenant) -> None:
    defn = await api.define()
    first = await api.generate(defn["id"], ["alice", "bob"])
    second = await api.generate(defn["id"], ["alice"])
    alice = await got(api, f"/coupons/{defn['id']}/codes?user_id=alice")
    assert alice["total"] == 2
    assert [c["code"] for c in alice["coupons"]] == [second["alice"], first["alice"]]
    assert {c["user_id"] for c in alice["coupons"]} == {"alice"}
    assert at(alice["coupons"][0]["issued_at"]) >= at(alice["coupons"][1]["issued_at"])
    bob = await got(api, f"/coupons/{defn['id']}/codes?user_id=bob")
    assert (bob["total"], [c["code"] for c in bob["coupons"]]) == (1, [first["bob"]])
    nobody = await got(api, f"/coupons/{defn['id']}/codes?user_id=nobody")
    assert nobody == {"coupons": [], "total": 0}
    paged = await got(api, f"/coupons/{defn['id']}/codes?user_id=alice&limit=1&offset=1")
    assert (paged["total"], [c["code"] for c in paged["coupons"]]) == (2, [first["alice"]])


async def test_a_custom_definition_lists_its_shared_code(api: Tenant) -> None:
    defn = await api.define("SHARED-1", UNLIMITED)
    listed = await got(api, f"/coupons/{defn['id']}/codes")
    assert listed["total"] == 1
    [shared] = listed["coupons"]
    assert (shared["code"], shared["kind"], shared["source"]) == (
        "SHARED-1",
        "shared",
        "definition",
    )
    assert shared["user_id"] is None


async def test_codes_of_an_unknown_definition_are_404(api: Tenant) -> None:
    refused(await get(api, f"/coupons/{uuid.uuid4()}/codes"), 404, "definition_not_found")


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "offset=-1"])
async def test_bad_page_parameters_are_422(api: Tenant, query: str) -> None:
    defn = await api.define()
    response = await get(api, f"/coupons/{defn['id']}/codes?{query}")
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"


# --- wallet ----------------------------------------------------------------------------------


async def test_wallet_shows_remaining_uses_per_limit_type(api: Tenant) -> None:
    expires = datetime.now(UTC) + timedelta(days=30)
    per_user = await api.define(limit=PER_USER_2, expires_at=expires)
    global_ = await api.define(limit=GLOBAL_3)
    unlimited = await api.define(limit=UNLIMITED)
    a = (await api.generate(per_user["id"], ["alice"]))["alice"]
    g = await api.generate(global_["id"], ["alice", "bob"])
    u = (await api.generate(unlimited["id"], ["alice"]))["alice"]
    await api.define("SHARED-W", UNLIMITED)  # a shared code belongs to no one's wallet

    wallet = await got(api, "/users/alice/coupons")
    assert wallet["total"] == 3
    by_code = {c["code"]: c for c in wallet["coupons"]}
    assert set(by_code) == {a, g["alice"], u}
    assert by_code[a]["definition_id"] == per_user["id"]
    assert at(by_code[a]["expires_at"]) == expires.replace(
        microsecond=expires.microsecond // 1000 * 1000
    )
    assert all(c["user_id"] == "alice" and c["status"] == "active" for c in wallet["coupons"])
    assert await remaining(api, "alice") == {a: 2, g["alice"]: 3, u: None}

    first = await api.redeemed(a, "alice")
    await api.redeemed(u, "alice")
    await api.redeemed(g["bob"], "bob")  # the global limit is shared by every user
    assert await remaining(api, "alice") == {a: 1, g["alice"]: 2, u: None}
    assert await remaining(api, "bob") == {g["bob"]: 2}

    await api.redeemed(a, "alice")
    assert (await remaining(api, "alice"))[a] == 0
    assert (await api.rollback(first["redemption_id"])).status_code == 200
    assert (await remaining(api, "alice"))[a] == 1


async def test_wallet_counts_per_user_across_the_definitions_codes(api: Tenant) -> None:
    defn = await api.define(limit={"limit_type": "per_user", "max_uses": 1})
    one = (await api.generate(defn["id"], ["alice"]))["alice"]
    two = (await api.generate(defn["id"], ["alice"]))["alice"]
    assert await remaining(api, "alice") == {one: 1, two: 1}
    redemption = await api.redeemed(two, "alice")
    assert await remaining(api, "alice") == {one: 0, two: 0}
    refused(await api.redeem(one, "alice"), 409, "per_user_limit_reached")
    assert (await api.rollback(redemption["redemption_id"])).status_code == 200
    assert await remaining(api, "alice") == {one: 1, two: 1}


async def test_wallet_after_the_global_limit_is_reached_shows_zero(api: Tenant) -> None:
    defn = await api.define(limit={"limit_type": "global", "max_uses": 1})
    codes = await api.generate(defn["id"], ["alice", "bob"])
    await api.redeemed(codes["bob"], "bob")
    assert await remaining(api, "alice") == {codes["alice"]: 0}
    refused(await api.redeem(codes["alice"], "alice"), 409, "global_limit_reached")


async def test_wallet_is_paginated_and_empty_for_an_unknown_user(api: Tenant) -> None:
    defn = await api.define(limit=UNLIMITED)
    for _ in range(3):
        await api.generate(defn["id"], ["alice"])
    page = await got(api, "/users/alice/coupons?limit=2&offset=2")
    assert (page["total"], len(page["coupons"])) == (3, 1)
    assert page["coupons"][0]["remaining_uses"] is None
    assert await got(api, "/users/nobody/coupons") == {
        "user_id": "nobody",
        "coupons": [],
        "total": 0,
    }


# --- one code's state and history ------------------------------------------------------------


async def test_code_state_has_the_redemption_history_newest_first(api: Tenant) -> None:
    defn = await api.define("HISTORY", UNLIMITED)
    first = await api.redeemed("HISTORY", "alice")
    second = await api.redeemed("HISTORY", "bob")
    back = await api.rollback(first["redemption_id"])
    assert back.status_code == 200, back.text
    state = await got(api, "/codes/history")  # case is ignored
    assert state["coupon"]["code"] == "HISTORY"
    assert state["coupon"]["definition_id"] == defn["id"]
    history = state["redemptions"]
    assert [r["redemption_id"] for r in history] == [
        second["redemption_id"],
        first["redemption_id"],
    ]
    assert [(r["user_id"], r["status"]) for r in history] == [
        ("bob", "redeemed"),
        ("alice", "rolled_back"),
    ]
    assert history[0] == second
    assert at(history[1]["rolled_back_at"]) == at(back.json()["rolled_back_at"])
    assert history[1]["reward"] == api.reward


async def test_code_state_of_a_code_never_redeemed(api: Tenant) -> None:
    defn = await api.define()
    code = (await api.generate(defn["id"], ["alice"]))["alice"]
    state = await got(api, f"/codes/{code}")
    assert state["redemptions"] == []
    assert (state["coupon"]["code"], state["coupon"]["user_id"]) == (code, "alice")


async def test_an_unknown_code_is_404(api: Tenant) -> None:
    refused(await get(api, "/codes/NO-SUCH-CODE"), 404, "code_not_found")
    refused(await get(api, "/codes/NO-SUCH-CODE/history"), 404, "code_not_found")
    response = await api.client.post(f"{api.base}/codes/NO-SUCH-CODE/revoke", headers=api.headers)
    refused(response, 404, "code_not_found")


# --- revocation ------------------------------------------------------------------------------


async def test_a_revoked_code_is_refused_and_shows_revoked(api: Tenant) -> None:
    defn = await api.define(limit=UNLIMITED)
    codes = await api.generate(defn["id"], ["alice", "bob"])
    earlier = await api.redeemed(codes["alice"], "alice")
    before = datetime.now(UTC) - timedelta(seconds=1)
    state = await api.revoke(codes["alice"].lower())
    coupon = state["coupon"]
    assert (coupon["code"], coupon["status"]) == (codes["alice"], "revoked")
    assert before <= at(coupon["revoked_at"]) <= datetime.now(UTC) + timedelta(seconds=1)
    assert [r["redemption_id"] for r in state["redemptions"]] == [earlier["redemption_id"]]
    assert (await got(api, f"/codes/{codes['alice']}"))["coupon"]["status"] == "revoked"

    verdict = await api.validate(codes["alice"], "alice")
    assert (verdict["valid"], verdict["reason"]) == (False, "coupon_revoked")
    refused(await api.redeem(codes["alice"], "alice"), 409, "coupon_revoked")
    wallet = await got(api, "/users/alice/coupons")
    assert [c["status"] for c in wallet["coupons"]] == ["revoked"]
    # Other codes of the definition are untouched; the earlier redemption can still be undone.
    assert (await api.redeemed(codes["bob"], "bob"))["coupon"]["status"] == "active"
    assert (await api.rollback(earlier["redemption_id"])).status_code == 200


async def test_revoking_a_shared_code_refuses_every_user(api: Tenant) -> None:
    await api.define("EVERYONE", UNLIMITED)
    await api.redeemed("EVERYONE", "alice")
    await api.revoke("EVERYONE")
    for user in ("alice", "bob"):
        refused(await api.redeem("EVERYONE", user), 409, "coupon_revoked")


async def test_revoking_twice_keeps_the_first_revocation(api: Tenant) -> None:
    defn = await api.define()
    code = (await api.generate(defn["id"], ["alice"]))["alice"]
    first = await api.revoke(code)
    second = await api.revoke(code)
    assert second == first


# --- scopes and tenant isolation -------------------------------------------------------------


async def test_queries_need_read_and_revoke_needs_write(api: Tenant, make_key: KeyFactory) -> None:
    defn = await api.define()
    code = (await api.generate(defn["id"], ["alice"]))["alice"]
    redeemer = (await make_key(scopes="coupons:redeem", tenant=api.id))["headers"]
    reader = (await make_key(scopes="coupons:read", tenant=api.id))["headers"]
    queries = ("/users/alice/coupons", f"/codes/{code}", f"/codes/{code}/history")
    for path in (f"/coupons/{defn['id']}/codes", *queries):
        refused(await get(api, path, redeemer), 403, "missing_scope")
        assert (await get(api, path, reader)).status_code == 200
    response = await api.client.post(f"{api.base}/codes/{code}/revoke", headers=reader)
    refused(response, 403, "missing_scope")
    response = await api.client.post(f"{api.base}/codes/{code}/revoke", headers=redeemer)
    refused(response, 403, "missing_scope")
    assert (await got(api, f"/codes/{code}"))["coupon"]["status"] == "active"


async def test_another_tenants_coupons_are_invisible(
    api: Tenant, make_key: KeyFactory, client: httpx.AsyncClient
) -> None:
    defn = await api.define()
    code = (await api.generate(defn["id"], ["alice"]))["alice"]
    other_tenant = f"t-{uuid.uuid4().hex[:12]}"
    stranger = (await make_key(tenant=other_tenant))["headers"]
    queries = ("/users/alice/coupons", f"/codes/{code}", f"/codes/{code}/history")
    for path in (f"/coupons/{defn['id']}/codes", *queries):
        refused(await get(api, path, stranger), 403, "tenant_forbidden")
    refused(
        await client.post(f"{api.base}/codes/{code}/revoke", headers=stranger),
        403,
        "tenant_forbidden",
    )
    other = Tenant(client, other_tenant, stranger, {})
    refused(await get(other, f"/coupons/{defn['id']}/codes"), 404, "definition_not_found")
    refused(await get(other, f"/codes/{code}"), 404, "code_not_found")
    refused(await get(other, f"/codes/{code}/history"), 404, "code_not_found")
    response = await client.post(f"{other.base}/codes/{code}/revoke", headers=stranger)
    refused(response, 404, "code_not_found")
    assert await got(other, "/users/alice/coupons") == {
        "user_id": "alice",
        "coupons": [],
        "total": 0,
    }
    assert (await got(api, f"/codes/{code}"))["coupon"]["status"] == "active"
