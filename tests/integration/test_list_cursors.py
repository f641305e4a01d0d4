"""Every list page by its list key: `after` (a page's `next_after` / `X-Next-After`) walks
the same items in the same order as `offset` does, `total` is the kept count, and a bad
cursor is a 422 naming `after`."""

from typing import Any

import httpx
import pytest

from tests.integration.test_redemption import Tenant

Json = dict[str, Any]


@pytest.fixture
def api(client: httpx.AsyncClient, admin: Json, reward: Json, tenant: str) -> Tenant:
    return Tenant(client, tenant, admin["headers"], reward)


async def walk(
    api: Tenant, path: str, items: str, limit: int, **query: str
) -> tuple[list[str], list[int]]:
    """Ids of every page followed by cursor, and each page's total."""
    ids: list[str] = []
    totals: list[int] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit, **query}
        if after is not None:
            params["after"] = after
        response = await api.client.get(path, params=params, headers=api.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        ids += [i.get("id") or i.get("item_id") for i in body[items]]
        totals.append(body["total"])
        after = response.headers.get("X-Next-After")
        if items != "definitions":
            assert body.get("next_after") == after
        if after is None:
            return ids, totals


async def by_offset(api: Tenant, path: str, items: str) -> list[str]:
    response = await api.client.get(path, params={"limit": 500}, headers=api.headers)
    return [i.get("id") or i.get("item_id") for i in response.json()[items]]


async def test_a_definitions_codes_and_a_wallet_by_cursor(api: Tenant) -> None:
    defn = await api.define()
    await api.generate(defn["id"], [f"user-{i}" for i in range(7)])
    await api.generate(defn["id"], ["user-1", "user-2"])
    path = f"{api.base}/coupons/{defn['id']}/codes"
    ids, totals = await walk(api, path, "coupons", 3)
    assert ids == await by_offset(api, path, "coupons") and len(ids) == 9
    assert totals == [9, 9, 9]
    ids, totals = await walk(api, path, "coupons", 1, user_id="user-1")
    assert len(ids) == 2 and totals == [2, 2]
    wallet = f"{api.base}/users/user-2/coupons"
    ids, totals = await walk(api, wallet, "coupons", 1)
    assert ids == await by_offset(api, wallet, "coupons") and totals == [2, 2]


async def test_definitions_and_rewards_by_cursor(api: Tenant) -> None:
    made = [(await api.define())["id"] for _ in range(5)]
    await api.client.put(
        f"{api.base}/coupons/{made[1]}/status", json={"status": "paused"}, headers=api.headers
    )
    await api.client.delete(f"{api.base}/coupons/{made[2]}", headers=api.headers)
    path = f"{api.base}/coupons"
    ids, totals = await walk(api, path, "definitions", 2)
    assert ids == await by_offset(api, path, "definitions")
    assert set(ids) == set(made) - {made[2]} and totals == [4, 4]
    ids, _ = await walk(api, path, "definitions", 2, include_archived="true")
    assert set(ids) == set(made)
    for _ in range(3):
        created = await api.client.post(
            f"{api.base}/rewards", json={"name": "r", "reward_type": "points"}, headers=api.headers
        )
        assert created.status_code == 201, created.text
    rewards = f"{api.base}/rewards"
    ids, totals = await walk(api, rewards, "rewards", 2)
    assert ids == await by_offset(api, rewards, "rewards") and totals == [4, 4]


@pytest.mark.parametrize("after", ["x", "123|abc", "0" * 18 + "|a b", "0" * 18 + "|" + "a" * 200])
async def test_a_bad_cursor_is_422_naming_after(api: Tenant, after: str) -> None:
    response = await api.client.get(
        f"{api.base}/rewards", params={"after": after}, headers=api.headers
    )
    assert response.status_code == 422, response.text
    assert [d["field"] for d in response.json()["details"]] == ["after"]
