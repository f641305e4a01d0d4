"""Validate, redeem and roll back through the HTTP API: every refusal reason, case
rules, shared versus owned codes, usage limits, idempotent redeem, rollback, tenant isolation,
scopes and the `coupon.redeemed` / `coupon.redemption_rolled_back` events."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from phoenix_coupons.adapters.mongo_schema import OUTBOX
from phoenix_coupons.adapters.outbox import entry_doc
from phoenix_coupons.adapters.redemption_repo import from_doc as redemption_from_doc
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.domain.events import event_id
from phoenix_coupons.domain.outbox import redeemed
from phoenix_coupons.settings import Settings
from tests.conftest import KeyFactory
from tests.support import read_events, records_to_end, wait_until

Json = dict[str, Any]
PER_USER_1 = {"limit_type": "per_user", "max_uses": 1}
UNLIMITED = {"limit_type": "unlimited"}


class Tenant:
    """One test's tenant driven through the API with an all-scopes key."""

    def __init__(
        self, client: httpx.AsyncClient, tenant: str, headers: dict[str, str], reward: Json
    ) -> None:
        self.client = client
        self.id = tenant
        self.headers = headers
        self.reward = reward
        self.base = f"/v1/tenants/{tenant}"

    async def define(
        self,
        code: str | None = None,
        limit: Json | None = None,
        *,
        case_sensitive: bool = False,
        starts_at: datetime | None = None,
        expires_at: datetime | None = None,
    ) -> Json:
        """A definition with the shared custom `code`, or random codes when `code` is None."""
        config: Json = {
            "reward_item_id": self.reward["item_id"],
            "usage_limit": limit or PER_USER_1,
            "case_sensitive": case_sensitive,
        }
        if code is None:
            config.update(code_format="random", code_prefix="R-")
        else:
            config.update(code_format="custom", custom_code=code)
        if starts_at is not None:
            config["starts_at"] = starts_at.isoformat()
        if expires_at is not None:
            config["expires_at"] = expires_at.isoformat()
        response = await self.client.post(
            f"{self.base}/coupons",
            json={"name": f"promo {code}", "config": config},
            headers=self.headers,
        )
        assert response.status_code == 201, response.text
        body: Json = response.json()
        return body

    async def generate(self, definition_id: str, users: list[str]) -> dict[str, str]:
        """Bulk-issue one random code per user: user id -> code."""
        response = await self.client.post(
            f"{self.base}/coupons/{definition_id}/generate",
            json={"user_ids": users},
            headers=self.headers,
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["generated"] == len(users)
        return {c["user_id"]: c["code"] for c in body["coupons"]}

    async def redeem(
        self,
        code: str,
        user: str,
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        h = dict(self.headers if headers is None else headers)
        if key is not None:
            h["Idempotency-Key"] = key
        return await self.client.post(
            f"{self.base}/coupons/redeem", json={"code": code, "user_id": user}, headers=h
        )

    async def redeemed(self, code: str, user: str) -> Json:
        response = await self.redeem(code, user)
        assert response.status_code == 201, response.text
        body: Json = response.json()
        return body

    async def validate(self, code: str, user: str) -> Json:
        response = await self.client.post(
            f"{self.base}/coupons/validate",
            json={"code": code, "user_id": user},
            headers=self.headers,
        )
        assert response.status_code == 200, response.text
        body: Json = response.json()
        return body

    async def rollback(self, redemption_id: str) -> httpx.Response:
        return await self.client.post(
            f"{self.base}/coupons/redemptions/{redemption_id}/rollback", headers=self.headers
        )

    async def set_status(self, definition_id: str, status: str) -> None:
        response = await self.client.put(
            f"{self.base}/coupons/{definition_id}/status",
            json={"status": status},
            headers=self.headers,
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == status

    async def archive(self, definition_id: str) -> None:
        response = await self.client.delete(
            f"{self.base}/coupons/{definition_id}", headers=self.headers
        )
        assert response.status_code == 204, response.text

    async def revoke(self, code: str) -> Json:
        response = await self.client.post(f"{self.base}/codes/{code}/revoke", headers=self.headers)
        assert response.status_code == 200, response.text
        body: Json = response.json()
        return body


def refused(response: httpx.Response, status: int, error: str) -> None:
    """The one error body with the stable reason."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error, body
    assert isinstance(body["message"], str) and body["message"]
    assert body["details"] == []


async def refused_everywhere(t: Tenant, code: str, user: str, status: int, error: str) -> None:
    """validate reports the reason a redeem then gets."""
    verdict = await t.validate(code, user)
    assert verdict["valid"] is False
    assert verdict["reason"] == error
    refused(await t.redeem(code, user), status, error)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def api(client: httpx.AsyncClient, admin: Json, reward: Json, tenant: str) -> Tenant:
    return Tenant(client, tenant, admin["headers"], reward)


# --- a successful redeem --------------------------------------------------------------------


async def test_redeem_of_a_shared_code_answers_the_redemption_and_reward_snapshot(
    api: Tenant,
) -> None:
    defn = await api.define("WELCOME-10", UNLIMITED)
    before = datetime.now(UTC) - timedelta(seconds=1)
    response = await api.redeem("welcome-10", "alice")
    assert response.status_code == 201, response.text
    body = response.json()
    uuid.UUID(body["redemption_id"])
    assert body["status"] == "redeemed"
    assert body["user_id"] == "alice"
    assert before <= at(body["redeemed_at"]) <= datetime.now(UTC) + timedelta(seconds=1)
    assert body["rolled_back_at"] is None
    coupon = body["coupon"]
    assert coupon["code"] == "WELCOME-10"
    assert coupon["tenant_id"] == api.id
    assert coupon["definition_id"] == defn["id"]
    assert coupon["reward_item_id"] == api.reward["item_id"]
    assert (coupon["kind"], coupon["source"], coupon["user_id"]) == ("shared", "definition", None)
    assert coupon["status"] == "active"
    assert body["reward"] == api.reward


async def test_validate_of_a_redeemable_code_answers_the_coupon_and_reward(api: Tenant) -> None:
    await api.define("HELLO", UNLIMITED)
    verdict = await api.validate("hello", "alice")
    assert verdict["valid"] is True
    assert verdict["reason"] is None
    assert verdict["coupon"]["code"] == "HELLO"
    assert verdict["reward"] == api.reward


# --- every refusal reason -------------------------------------------------------------------


async def test_unknown_code_is_code_not_found(api: Tenant) -> None:
    await api.define("KNOWN")
    verdict = await api.validate("UNKNOWN", "alice")
    assert verdict == {"valid": False, "reason": "code_not_found", "coupon": None, "reward": None}
    refused(await api.redeem("UNKNOWN", "alice"), 404, "code_not_found")
    refused(await api.redeem("KNOWN-", "alice"), 404, "code_not_found")


async def test_a_window_in_the_future_is_not_yet_valid(api: Tenant) -> None:
    now = datetime.now(UTC)
    await api.define("SOON", starts_at=now + timedelta(days=1), expires_at=now + timedelta(days=2))
    await refused_everywhere(api, "SOON", "alice", 409, "not_yet_valid")


async def test_a_window_in_the_past_is_expired(api: Tenant) -> None:
    now = datetime.now(UTC)
    await api.define("GONE", starts_at=now - timedelta(days=2), expires_at=now - timedelta(days=1))
    await refused_everywhere(api, "GONE", "alice", 409, "expired")
    await api.define("ENDED", expires_at=now - timedelta(seconds=1))
    await refused_everywhere(api, "ENDED", "alice", 409, "expired")


async def test_an_open_window_redeems(api: Tenant) -> None:
    now = datetime.now(UTC)
    await api.define("NOW", starts_at=now - timedelta(days=1), expires_at=now + timedelta(days=1))
    assert (await api.redeemed("NOW", "alice"))["status"] == "redeemed"


async def test_a_paused_definition_refuses_until_activated_again(api: Tenant) -> None:
    defn = await api.define("PAUSE-ME")
    await api.set_status(defn["id"], "paused")
    await refused_everywhere(api, "PAUSE-ME", "alice", 409, "definition_paused")
    await api.set_status(defn["id"], "active")
    assert (await api.validate("PAUSE-ME", "alice"))["valid"] is True
    assert (await api.redeemed("PAUSE-ME", "alice"))["user_id"] == "alice"


async def test_an_archived_definition_refuses(api: Tenant) -> None:
    shared = await api.define("ARCHIVE-ME")
    bulk = await api.define()
    codes = await api.generate(bulk["id"], ["alice"])
    await api.archive(shared["id"])
    await api.archive(bulk["id"])
    await refused_everywhere(api, "ARCHIVE-ME", "alice", 409, "definition_archived")
    await refused_everywhere(api, codes["alice"], "alice", 409, "definition_archived")


async def test_a_revoked_code_refuses(api: Tenant) -> None:
    bulk = await api.define()
    codes = await api.generate(bulk["id"], ["alice", "bob"])
    state = await api.revoke(codes["alice"])
    assert state["coupon"]["status"] == "revoked"
    await refused_everywhere(api, codes["alice"], "alice", 409, "coupon_revoked")
    assert (await api.redeemed(codes["bob"], "bob"))["coupon"]["code"] == codes["bob"]


async def test_a_code_issued_to_another_user_is_not_owner(api: Tenant) -> None:
    bulk = await api.define(limit=UNLIMITED)
    codes = await api.generate(bulk["id"], ["alice"])
    await refused_everywhere(api, codes["alice"], "bob", 409, "not_owner")
    redemption = await api.redeemed(codes["alice"], "alice")
    assert redemption["coupon"]["user_id"] == "alice"
    assert (redemption["coupon"]["kind"], redemption["coupon"]["source"]) == ("issued", "bulk")


async def test_per_user_limit_reached(api: Tenant) -> None:
    await api.define("TWICE", {"limit_type": "per_user", "max_uses": 2})
    await api.redeemed("TWICE", "alice")
    assert (await api.validate("TWICE", "alice"))["valid"] is True
    await api.redeemed("TWICE", "alice")
    await refused_everywhere(api, "TWICE", "alice", 409, "per_user_limit_reached")
    assert (await api.redeemed("TWICE", "bob"))["user_id"] == "bob"


async def test_global_limit_reached(api: Tenant) -> None:
    await api.define("FIRST-TWO", {"limit_type": "global", "max_uses": 2})
    await api.redeemed("FIRST-TWO", "alice")
    await api.redeemed("FIRST-TWO", "bob")
    await refused_everywhere(api, "FIRST-TWO", "carol", 409, "global_limit_reached")
    await refused_everywhere(api, "FIRST-TWO", "alice", 409, "global_limit_reached")


async def test_unlimited_counts_nothing(api: Tenant) -> None:
    await api.define("ALWAYS", UNLIMITED)
    ids = {(await api.redeemed("ALWAYS", "alice"))["redemption_id"] for _ in range(5)}
    assert len(ids) == 5
    assert (await api.validate("ALWAYS", "alice"))["valid"] is True


async def test_per_user_counts_across_the_definitions_codes(api: Tenant) -> None:
    bulk = await api.define()  # per_user, max_uses 1
    first = await api.generate(bulk["id"], ["alice", "bob"])
    second = await api.generate(bulk["id"], ["alice"])
    assert first["alice"] != second["alice"]
    await api.redeemed(first["alice"], "alice")
    await refused_everywhere(api, second["alice"], "alice", 409, "per_user_limit_reached")
    await refused_everywhere(api, first["alice"], "alice", 409, "per_user_limit_reached")
    assert (await api.redeemed(first["bob"], "bob"))["user_id"] == "bob"


# --- case rules, shared versus owned codes ---------------------------------------------------


async def test_a_case_insensitive_definitions_code_redeems_in_any_case(api: Tenant) -> None:
    await api.define("Summer-Sale", UNLIMITED)
    for typed in ("Summer-Sale", "SUMMER-SALE", "summer-sale", "sUMMER-sALE"):
        assert (await api.validate(typed, "alice"))["valid"] is True
        body = await api.redeemed(typed, "alice")
        assert body["coupon"]["code"] == "Summer-Sale"
    bulk = await api.define(limit=UNLIMITED)
    code = (await api.generate(bulk["id"], ["bob"]))["bob"]
    assert code == code.upper()
    assert (await api.redeemed(code.lower(), "bob"))["coupon"]["code"] == code


async def test_a_case_sensitive_definitions_code_redeems_only_exactly(api: Tenant) -> None:
    await api.define("MiXeD-42", UNLIMITED, case_sensitive=True)
    for typed in ("MIXED-42", "mixed-42", "mIxEd-42"):
        verdict = await api.validate(typed, "alice")
        assert (verdict["valid"], verdict["reason"]) == (False, "code_not_found")
        refused(await api.redeem(typed, "alice"), 404, "code_not_found")
    assert (await api.redeemed("MiXeD-42", "alice"))["coupon"]["code"] == "MiXeD-42"
    bulk = await api.define(limit=UNLIMITED, case_sensitive=True)
    code = (await api.generate(bulk["id"], ["bob"]))["bob"]
    assert code.swapcase() != code  # R- prefix and 8 characters of a mixed alphabet
    refused(await api.redeem(code.swapcase(), "bob"), 404, "code_not_found")
    assert (await api.redeemed(code, "bob"))["coupon"]["code"] == code


async def test_a_shared_code_serves_every_user_an_owned_code_only_its_owner(api: Tenant) -> None:
    await api.define("FOR-ALL", PER_USER_1)
    for user in ("alice", "bob", "carol"):
        body = await api.redeemed("FOR-ALL", user)
        assert (body["user_id"], body["coupon"]["user_id"]) == (user, None)
    bulk = await api.define(limit=UNLIMITED)
    codes = await api.generate(bulk["id"], ["alice", "bob"])
    refused(await api.redeem(codes["alice"], "bob"), 409, "not_owner")
    refused(await api.redeem(codes["bob"], "alice"), 409, "not_owner")
    assert (await api.redeemed(codes["alice"], "alice"))["coupon"]["user_id"] == "alice"
    assert (await api.redeemed(codes["bob"], "bob"))["coupon"]["user_id"] == "bob"


# --- validate consumes nothing ---------------------------------------------------------------


async def test_validate_consumes_nothing(api: Tenant) -> None:
    await api.define("ONCE", {"limit_type": "global", "max_uses": 1})
    verdicts = await asyncio.gather(*[api.validate("ONCE", f"u{i}") for i in range(10)])
    assert all(v["valid"] is True and v["reason"] is None for v in verdicts)
    for _ in range(5):
        assert (await api.validate("ONCE", "alice"))["valid"] is True
    await api.redeemed("ONCE", "alice")
    verdict = await api.validate("ONCE", "bob")
    assert (verdict["valid"], verdict["reason"]) == (False, "global_limit_reached")
    assert verdict["coupon"]["code"] == "ONCE"
    assert verdict["reward"] == api.reward


# --- idempotent redeem -----------------------------------------------------------------------


async def test_a_replayed_key_answers_the_first_redemption_and_consumes_one_use(
    api: Tenant,
) -> None:
    await api.define("KEYED", {"limit_type": "per_user", "max_uses": 2})
    first = await api.redeem("KEYED", "alice", key="k-1")
    assert first.status_code == 201, first.text
    for _ in range(3):
        again = await api.redeem("KEYED", "alice", key="k-1")
        assert again.status_code == 200, again.text
        assert again.json() == first.json()
    # Only one use consumed: alice still has one.
    assert (await api.validate("KEYED", "alice"))["valid"] is True
    await api.redeemed("KEYED", "alice")
    await refused_everywhere(api, "KEYED", "alice", 409, "per_user_limit_reached")
    # The replay still answers after the limit was reached.
    assert (await api.redeem("KEYED", "alice", key="k-1")).json() == first.json()


async def test_a_key_reused_for_another_body_is_refused(api: Tenant) -> None:
    await api.define("REUSE", UNLIMITED)
    first = await api.redeem("REUSE", "alice", key="k-2")
    assert first.status_code == 201, first.text
    for other in (
        await api.redeem("REUSE", "bob", key="k-2"),
        await api.redeem("reuse", "alice", key="k-2"),
    ):
        assert other.status_code == 422, other.text
        assert other.json()["error"] == "idempotency_key_reused"
        assert [d["field"] for d in other.json()["details"]] == ["Idempotency-Key"]
    assert (await api.redeem("REUSE", "bob", key="k-3")).status_code == 201


async def test_keys_are_scoped_to_the_tenant(
    client: httpx.AsyncClient, api: Tenant, make_key: KeyFactory, reward: Json
) -> None:
    other_tenant = f"t-{uuid.uuid4().hex[:12]}"
    other_key = await make_key(tenant=other_tenant)
    other_reward = await client.post(
        f"/v1/tenants/{other_tenant}/rewards",
        json={"name": "Other", "reward_type": "points", "payload": {}},
        headers=other_key["headers"],
    )
    assert other_reward.status_code == 201, other_reward.text
    other = Tenant(client, other_tenant, other_key["headers"], other_reward.json())
    await api.define("MINE", UNLIMITED)
    await other.define("THEIRS", UNLIMITED)
    mine = await api.redeem("MINE", "alice", key="same-key")
    theirs = await other.redeem("THEIRS", "alice", key="same-key")
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["redemption_id"] != theirs.json()["redemption_id"]


async def test_concurrent_redeems_with_one_key_consume_one_use(api: Tenant) -> None:
    """Retries racing each other: every answer is the one redemption, never a refusal."""
    await api.define("RACE-KEY", {"limit_type": "global", "max_uses": 1})
    answers = await asyncio.gather(
        *[api.redeem("RACE-KEY", "alice", key="race") for _ in range(20)]
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 19 + [201], [a.text for a in answers if a.status_code >= 400]
    assert len({a.json()["redemption_id"] for a in answers}) == 1
    refused(await api.redeem("RACE-KEY", "bob"), 409, "global_limit_reached")


# --- rollback ------------------------------------------------------------------------------


async def test_rollback_gives_exactly_one_use_back(api: Tenant) -> None:
    await api.define("ONE-USE", {"limit_type": "global", "max_uses": 1})
    first = await api.redeemed("ONE-USE", "alice")
    refused(await api.redeem("ONE-USE", "bob"), 409, "global_limit_reached")
    back = await api.rollback(first["redemption_id"])
    assert back.status_code == 200, back.text
    body = back.json()
    assert body["redemption_id"] == first["redemption_id"]
    assert body["status"] == "rolled_back"
    assert at(body["rolled_back_at"]) >= at(first["redeemed_at"])
    assert at(body["redeemed_at"]) == at(first["redeemed_at"])
    assert (body["coupon"], body["reward"]) == (first["coupon"], first["reward"])
    assert (await api.validate("ONE-USE", "bob"))["valid"] is True
    second = await api.redeemed("ONE-USE", "bob")
    assert second["redemption_id"] != first["redemption_id"]
    await refused_everywhere(api, "ONE-USE", "carol", 409, "global_limit_reached")


async def test_rollback_on_per_user_frees_that_users_use(api: Tenant) -> None:
    await api.define("MINE-ONCE", PER_USER_1)
    first = await api.redeemed("MINE-ONCE", "alice")
    await api.redeemed("MINE-ONCE", "bob")
    assert (await api.rollback(first["redemption_id"])).status_code == 200
    await refused_everywhere(api, "MINE-ONCE", "bob", 409, "per_user_limit_reached")
    await api.redeemed("MINE-ONCE", "alice")
    refused(await api.redeem("MINE-ONCE", "alice"), 409, "per_user_limit_reached")


async def test_rollback_twice_is_refused_and_gives_back_nothing_more(api: Tenant) -> None:
    await api.define("TWO-USES", {"limit_type": "global", "max_uses": 2})
    first = await api.redeemed("TWO-USES", "alice")
    await api.redeemed("TWO-USES", "bob")
    assert (await api.rollback(first["redemption_id"])).status_code == 200
    refused(await api.rollback(first["redemption_id"]), 409, "already_rolled_back")
    await api.redeemed("TWO-USES", "carol")
    refused(await api.redeem("TWO-USES", "dave"), 409, "global_limit_reached")


async def test_concurrent_rollbacks_of_one_redemption_give_back_one_use(api: Tenant) -> None:
    await api.define("ROLL-RACE", {"limit_type": "global", "max_uses": 1})
    first = await api.redeemed("ROLL-RACE", "alice")
    answers = await asyncio.gather(*[api.rollback(first["redemption_id"]) for _ in range(10)])
    assert sorted(a.status_code for a in answers) == [200] + [409] * 9
    for a in answers:
        if a.status_code == 409:
            refused(a, 409, "already_rolled_back")
    redeems = await asyncio.gather(*[api.redeem("ROLL-RACE", f"u{i}") for i in range(10)])
    assert sorted(r.status_code for r in redeems) == [201] + [409] * 9


async def test_rollback_of_an_unknown_redemption_is_404(api: Tenant) -> None:
    refused(await api.rollback(str(uuid.uuid4())), 404, "redemption_not_found")
    refused(await api.rollback("not-a-redemption"), 404, "redemption_not_found")


# --- tenant isolation and scopes -------------------------------------------------------------


async def test_another_tenants_key_is_forbidden(
    api: Tenant, make_key: KeyFactory, client: httpx.AsyncClient
) -> None:
    await api.define("PRIVATE", UNLIMITED)
    first = await api.redeemed("PRIVATE", "alice")
    stranger = (await make_key(tenant=f"t-{uuid.uuid4().hex[:12]}"))["headers"]
    refused(await api.redeem("PRIVATE", "alice", headers=stranger), 403, "tenant_forbidden")
    for path in ("validate", f"redemptions/{first['redemption_id']}/rollback"):
        response = await client.post(
            f"{api.base}/coupons/{path}",
            json={"code": "PRIVATE", "user_id": "alice"},
            headers=stranger,
        )
        refused(response, 403, "tenant_forbidden")
    refused(await api.redeem("PRIVATE", "alice", headers={}), 401, "missing_credentials")
    # Nothing was rolled back by the stranger.
    assert (await api.rollback(first["redemption_id"])).status_code == 200


async def test_another_tenants_code_and_redemption_are_not_found(
    api: Tenant, make_key: KeyFactory, client: httpx.AsyncClient
) -> None:
    await api.define("OWNED-BY-A", UNLIMITED)
    first = await api.redeemed("OWNED-BY-A", "alice")
    other_tenant = f"t-{uuid.uuid4().hex[:12]}"
    other = Tenant(client, other_tenant, (await make_key(tenant=other_tenant))["headers"], {})
    verdict = await other.validate("OWNED-BY-A", "alice")
    assert (verdict["valid"], verdict["reason"]) == (False, "code_not_found")
    refused(await other.redeem("OWNED-BY-A", "alice"), 404, "code_not_found")
    refused(await other.rollback(first["redemption_id"]), 404, "redemption_not_found")
    assert (await api.rollback(first["redemption_id"])).status_code == 200


async def test_redeem_scope_is_required(
    api: Tenant, make_key: KeyFactory, client: httpx.AsyncClient
) -> None:
    await api.define("SCOPED", UNLIMITED)
    readonly = (await make_key(scopes="coupons:read,coupons:write", tenant=api.id))["headers"]
    redeemer = (await make_key(scopes="coupons:redeem", tenant=api.id))["headers"]
    refused(await api.redeem("SCOPED", "alice", headers=readonly), 403, "missing_scope")
    response = await client.post(
        f"{api.base}/coupons/validate",
        json={"code": "SCOPED", "user_id": "alice"},
        headers=readonly,
    )
    refused(response, 403, "missing_scope")
    done = await api.redeem("SCOPED", "alice", headers=redeemer)
    assert done.status_code == 201, done.text
    response = await client.post(
        f"{api.base}/coupons/redemptions/{done.json()['redemption_id']}/rollback",
        headers=readonly,
    )
    refused(response, 403, "missing_scope")


async def test_malformed_redeem_bodies_are_422(api: Tenant) -> None:
    for body in (
        {"code": "X"},
        {"code": "", "user_id": "a"},
        {"code": "X", "user_id": "a", "n": 1},
    ):
        response = await api.client.post(
            f"{api.base}/coupons/redeem", json=body, headers=api.headers
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "validation_error"


# --- metrics --------------------------------------------------------------------------------


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_redemptions_and_refusals_are_counted(api: Tenant) -> None:
    """`phoenix_redemptions_total{outcome}` and `phoenix_redemption_refusals_total{reason}`
    (the dashboard's panels): each answer of redeem and rollback, once."""
    outcomes = ("redeemed", "replayed", "rolled_back")
    reasons = ("code_not_found", "per_user_limit_reached")
    before = {o: counted("phoenix_redemptions_total", outcome=o) for o in outcomes}
    refused_before = {r: counted("phoenix_redemption_refusals_total", reason=r) for r in reasons}
    await api.define("COUNTED", PER_USER_1)
    first = await api.redeem("COUNTED", "alice", key="counted-1")
    assert first.status_code == 201, first.text
    assert (await api.redeem("COUNTED", "alice", key="counted-1")).status_code == 200
    refused(await api.redeem("COUNTED", "alice"), 409, "per_user_limit_reached")
    refused(await api.redeem("NO-SUCH-CODE", "alice"), 404, "code_not_found")
    assert (await api.rollback(first.json()["redemption_id"])).status_code == 200
    await api.validate("NO-SUCH-CODE", "alice")  # a question, not a refused redeem
    after = {o: counted("phoenix_redemptions_total", outcome=o) for o in outcomes}
    assert {o: after[o] - before[o] for o in outcomes} == dict.fromkeys(outcomes, 1)
    refused_after = {r: counted("phoenix_redemption_refusals_total", reason=r) for r in reasons}
    assert {r: refused_after[r] - refused_before[r] for r in reasons} == dict.fromkeys(reasons, 1)


# --- events ---------------------------------------------------------------------------------


def topic_reader(settings: Settings, tenant: str) -> Any:
    assert settings.kafka_bootstrap_servers
    bootstrap = settings.kafka_bootstrap_servers

    async def read(count: int, want: Any = None) -> list[Json]:
        return await read_events(
            bootstrap,
            settings.topic_coupons_redeemed,
            lambda e: e.get("tenant_id") == tenant and (want is None or want(e)),
            count,
        )

    return read


def check_event(event: Json, kind: str, redemption: Json, tenant: str) -> None:
    rid = redemption["redemption_id"]
    assert event["event_type"] == kind
    assert event["event_id"] == event_id(kind, rid)
    assert event["_headers"]["event_id"] == event["event_id"]
    assert event["_headers"]["event_type"] == kind
    assert event["_headers"]["tenant_id"] == tenant
    assert event["_key"] == redemption["user_id"] == event["user_id"]
    assert event["redemption_id"] == rid
    assert event["tenant_id"] == tenant
    coupon = redemption["coupon"]
    assert (event["coupon_id"], event["code"]) == (coupon["id"], coupon["code"])
    assert event["definition_id"] == coupon["definition_id"]
    assert event["reward"] == redemption["reward"]


async def test_each_redeem_and_rollback_is_announced(
    api: Tenant, settings: Settings, container: Container
) -> None:
    await api.define("ANNOUNCE", UNLIMITED)
    kept = await api.redeemed("ANNOUNCE", "alice")
    undone = await api.redeemed("ANNOUNCE", "bob")
    back = await api.rollback(undone["redemption_id"])
    assert back.status_code == 200, back.text
    events = await topic_reader(settings, api.id)(3)
    assert len(events) == 3, events
    by_kind = {(e["event_type"], e["redemption_id"]): e for e in events}
    redeemed_kept = by_kind[("coupon.redeemed", kept["redemption_id"])]
    redeemed_undone = by_kind[("coupon.redeemed", undone["redemption_id"])]
    rolled_back = by_kind[("coupon.redemption_rolled_back", undone["redemption_id"])]
    check_event(redeemed_kept, "coupon.redeemed", kept, api.id)
    check_event(redeemed_undone, "coupon.redeemed", undone, api.id)
    check_event(rolled_back, "coupon.redemption_rolled_back", undone, api.id)
    assert redeemed_kept["reward"] == api.reward
    assert at(redeemed_kept["occurred_at"]) == at(kept["redeemed_at"])
    assert at(rolled_back["occurred_at"]) == at(back.json()["rolled_back_at"])
    # Same key (user), same partition: the rollback comes after its redeem.
    assert events.index(redeemed_undone) < events.index(rolled_back)
    # Each announced once, and the rows are marked announced.
    await wait_until(lambda: _all_announced(container, api.id))
    assert len(await events_to_end(settings, api.id)) == 3


async def events_to_end(settings: Settings, tenant: str) -> list[Json]:
    """Every event of `tenant` on the redeemed topic, up to the topic's end offsets of now."""
    assert settings.kafka_bootstrap_servers
    return await records_to_end(
        settings.kafka_bootstrap_servers,
        settings.topic_coupons_redeemed,
        lambda e: e.get("tenant_id") == tenant,
    )


async def _all_announced(container: Container, tenant: str) -> bool:
    """No entry of the tenant's left in the outbox (sent ones are deleted)."""
    pending = await container.mongo.db[OUTBOX.name].find_one({"tenant_id": tenant})
    return pending is None


async def test_a_rollback_is_announced_after_its_redeem_even_when_that_is_late(
    api: Tenant, settings: Settings, container: Container
) -> None:
    """A relay claimed the redeem's event and died before sending it (its lease still runs):
    the rollback's event must wait, or a reward service sees a reversal before its grant."""
    await api.define("LATE", UNLIMITED)
    model = await api.redeemed("LATE", "alice")
    await wait_until(lambda: _all_announced(container, api.id))
    stored = await container.mongo.redemptions.find_one({"_id": model["redemption_id"]})
    assert stored is not None
    rid = str(uuid.uuid4())
    far = int((datetime.now(UTC) + timedelta(hours=1)).timestamp() * 1000)
    copy = redemption_from_doc({**stored, "_id": rid})
    entries = container.mongo.db[OUTBOX.name]
    await entries.insert_one(
        {**entry_doc(redeemed(copy), "ready"), "lease": far, "owner": "a-relay-that-crashed"}
    )
    await container.mongo.redemptions.insert_one({**stored, "_id": rid, "slot": f"free:{rid}"})
    back = await api.rollback(rid)
    assert back.status_code == 200, back.text
    # A full relay round after the rollback: it may not announce the rollback yet.
    await container.relay.publish_pending()
    waiting = await entries.find_one({"_id": event_id("coupon.redemption_rolled_back", rid)})
    assert waiting is not None and waiting["state"] == "ready"
    await entries.update_one({"_id": redeemed(copy).id}, {"$set": {"lease": 0}})
    events = await topic_reader(settings, api.id)(2, lambda e: e["redemption_id"] == rid)
    assert [e["event_type"] for e in events] == [
        "coupon.redeemed",
        "coupon.redemption_rolled_back",
    ]


async def test_the_reward_snapshot_does_not_follow_later_reward_changes(
    api: Tenant, settings: Settings
) -> None:
    await api.define("SNAPSHOT", UNLIMITED)
    first = await api.redeemed("SNAPSHOT", "alice")
    changed = await api.client.put(
        f"{api.base}/rewards/{api.reward['item_id']}",
        json={"name": "500 Bonus Points", "payload": {"amount": 500}},
        headers=api.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["payload"] == {"amount": 500}
    later = await api.redeemed("SNAPSHOT", "bob")
    assert later["reward"] == changed.json()
    assert first["reward"] == api.reward
    back = await api.rollback(first["redemption_id"])
    assert back.json()["reward"] == api.reward
    state = await api.client.get(f"{api.base}/codes/SNAPSHOT", headers=api.headers)
    assert state.status_code == 200, state.text
    rewards = {r["redemption_id"]: r["reward"] for r in state.json()["redemptions"]}
    assert rewards == {first["redemption_id"]: api.reward, later["redemption_id"]: changed.json()}
    events = await topic_reader(settings, api.id)(3)
    snapshots = {(e["event_type"], e["redemption_id"]): e["reward"] for e in events}
    assert snapshots == {
        ("coupon.redeemed", first["redemption_id"]): api.reward,
        ("coupon.redeemed", later["redemption_id"]): changed.json(),
        ("coupon.redemption_rolled_back", first["redemption_id"]): api.reward,
    }
