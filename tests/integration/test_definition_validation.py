"""Every rule of the spec's validation table and the trigger rules, each as an HTTP call
against the real servers: 422 naming the field with a reason, or 409 for a taken code."""

import copy
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import KeyFactory
from tests.integration.test_openapi import assert_error

DELETE = object()  # in an override: remove the key


def patched(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`base` with `override` merged in (objects merge, DELETE removes a key)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is DELETE:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = patched(out[key], value)
        else:
            out[key] = value
    return out


def random_config(item_id: str, **override: Any) -> dict[str, Any]:
    base = {
        "reward_item_id": item_id,
        "code_format": "random",
        "code_prefix": "WELCOME",
        "code_length": 8,
        "usage_limit": {"limit_type": "per_user", "max_uses": 1},
    }
    return patched(base, override)


def custom_config(item_id: str, code: str = "NEWYEAR2025", **override: Any) -> dict[str, Any]:
    base = {
        "reward_item_id": item_id,
        "code_format": "custom",
        "custom_code": code,
        "starts_at": "2025-01-01T00:00:00Z",
        "expires_at": "2025-01-31T23:59:59Z",
        "usage_limit": {"limit_type": "unlimited"},
    }
    return patched(base, override)


def auto(trigger: str | None, enabled: bool = True, **trigger_config: Any) -> dict[str, Any]:
    value: dict[str, Any] = {"enabled": enabled}
    if trigger is not None:
        value["trigger"] = trigger
    if trigger_config:
        value["trigger_config"] = trigger_config
    return {"auto_generate": value}


def coupons_url(tenant: str, *rest: str) -> str:
    return "/".join([f"/v1/tenants/{tenant}/coupons", *rest])


async def post(
    client: httpx.AsyncClient, tenant: str, headers: dict[str, str], config: dict[str, Any]
) -> httpx.Response:
    body = {"name": "Rule check", "config": config}
    return await client.post(coupons_url(tenant), json=body, headers=headers)


async def assert_nothing_stored(
    client: httpx.AsyncClient, tenant: str, headers: dict[str, str], count: int = 0
) -> None:
    listed = await client.get(
        coupons_url(tenant), params={"include_archived": "true"}, headers=headers
    )
    assert listed.status_code == 200, listed.text
    assert listed.json()["total"] == count


def assert_names(body: dict[str, Any], field: str, *words: str) -> None:
    """`field` is named in `details` with a reason mentioning each of `words`."""
    reasons = [d["reason"].lower() for d in body["details"] if d["field"] == field]
    assert reasons, f"{field!r} not named in {body['details']}"
    for word in words:
        assert any(word.lower() in r for r in reasons), (field, word, reasons)


# (id, config builder taking the reward item id, field, words its reason mentions)
RULES: list[tuple[str, Any, str, tuple[str, ...]]] = [
    (
        "reward-item-not-uuid",
        lambda i: random_config(i, reward_item_id="not-a-uuid"),
        "config.reward_item_id",
        ("uuid",),
    ),
    (
        "reward-item-unknown",
        lambda i: random_config(i, reward_item_id=str(uuid.uuid4())),
        "config.reward_item_id",
        ("reward item",),
    ),
    ("code-length-3", lambda i: random_config(i, code_length=3), "config.code_length", ("4",)),
    ("code-length-33", lambda i: random_config(i, code_length=33), "config.code_length", ("32",)),
    ("code-length-0", lambda i: random_config(i, code_length=0), "config.code_length", ("4",)),
    (
        "custom-code-space",
        lambda i: custom_config(i, "NEW YEAR"),
        "config.custom_code",
        ("hyphens",),
    ),
    (
        "custom-code-punctuation",
        lambda i: custom_config(i, "PROMO!2025"),
        "config.custom_code",
        ("hyphens",),
    ),
    (
        "custom-code-non-ascii",
        lambda i: custom_config(i, "PRÖMO"),
        "config.custom_code",
        ("letters",),
    ),
    ("custom-code-empty", lambda i: custom_config(i, ""), "config.custom_code", ("empty",)),
    ("custom-code-256", lambda i: custom_config(i, "A" * 256), "config.custom_code", ("255",)),
    (
        "starts-equal-expires",
        lambda i: custom_config(i, expires_at="2025-01-01T00:00:00Z"),
        "config.starts_at",
        ("expires_at",),
    ),
    (
        "starts-after-expires",
        lambda i: custom_config(i, starts_at="2025-02-01T00:00:00Z"),
        "config.starts_at",
        ("expires_at",),
    ),
    (
        "starts-after-expires-other-offset",
        lambda i: custom_config(
            i, starts_at="2025-01-01T10:00:00+02:00", expires_at="2025-01-01T07:30:00Z"
        ),
        "config.starts_at",
        ("expires_at",),
    ),
    (
        "per-user-max-uses-missing",
        lambda i: random_config(i, usage_limit={"max_uses": DELETE}),
        "config.usage_limit.max_uses",
        ("required",),
    ),
    (
        "global-max-uses-missing",
        lambda i: random_config(i, usage_limit={"limit_type": "global", "max_uses": DELETE}),
        "config.usage_limit.max_uses",
        ("required",),
    ),
    (
        "per-user-max-uses-0",
        lambda i: random_config(i, usage_limit={"max_uses": 0}),
        "config.usage_limit.max_uses",
        ("greater than 0",),
    ),
    (
        "global-max-uses-0",
        lambda i: random_config(i, usage_limit={"limit_type": "global", "max_uses": 0}),
        "config.usage_limit.max_uses",
        ("greater than 0",),
    ),
    (
        "global-max-uses-negative",
        lambda i: random_config(i, usage_limit={"limit_type": "global", "max_uses": -5}),
        "config.usage_limit.max_uses",
        ("greater than 0",),
    ),
    (
        "unlimited-with-max-uses",
        lambda i: random_config(i, usage_limit={"limit_type": "unlimited", "max_uses": 5}),
        "config.usage_limit.max_uses",
        ("unlimited",),
    ),
    (
        "auto-enabled-without-trigger",
        lambda i: random_config(i, **auto(None)),
        "config.auto_generate.trigger",
        ("required",),
    ),
    (
        "achievement-without-trigger-config",
        lambda i: random_config(i, **auto("achievement_completed")),
        "config.auto_generate.trigger_config.achievement_id",
        ("required",),
    ),
    (
        "achievement-without-achievement-id",
        lambda i: random_config(i, **auto("achievement_completed", streak_id="s1")),
        "config.auto_generate.trigger_config.achievement_id",
        ("required",),
    ),
    (
        "streak-without-streak-id",
        lambda i: random_config(i, **auto("streak_milestone", milestone_threshold=7)),
        "config.auto_generate.trigger_config.streak_id",
        ("required",),
    ),
    (
        "streak-without-threshold",
        lambda i: random_config(i, **auto("streak_milestone", streak_id="s1")),
        "config.auto_generate.trigger_config.milestone_threshold",
        ("required",),
    ),
    (
        "streak-threshold-0",
        lambda i: random_config(
            i, **auto("streak_milestone", streak_id="s1", milestone_threshold=0)
        ),
        "config.auto_generate.trigger_config.milestone_threshold",
        ("at least 1",),
    ),
    (
        "leaderboard-without-leaderboard-id",
        lambda i: random_config(i, **auto("leaderboard_rank", rank_threshold=3)),
        "config.auto_generate.trigger_config.leaderboard_id",
        ("required",),
    ),
    (
        "leaderboard-without-threshold",
        lambda i: random_config(i, **auto("leaderboard_rank", leaderboard_id="lb1")),
        "config.auto_generate.trigger_config.rank_threshold",
        ("required",),
    ),
    (
        "leaderboard-threshold-0",
        lambda i: random_config(
            i, **auto("leaderboard_rank", leaderboard_id="lb1", rank_threshold=0)
        ),
        "config.auto_generate.trigger_config.rank_threshold",
        ("at least 1",),
    ),
]


@pytest.mark.parametrize(
    ("build", "field", "words"), [r[1:] for r in RULES], ids=[r[0] for r in RULES]
)
async def test_rule_refuses_with_the_field_named(
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
    build: Any,
    field: str,
    words: tuple[str, ...],
) -> None:
    response = await post(client, tenant, admin["headers"], build(reward["item_id"]))
    body = assert_error(response, 422, "validation_error", [field])
    assert_names(body, field, *words)
    await assert_nothing_stored(client, tenant, admin["headers"])


# Valid edges of the same rules: each creates.
EDGES: list[tuple[str, Any]] = [
    ("code-length-4", lambda i: random_config(i, code_length=4)),
    ("code-length-32", lambda i: random_config(i, code_length=32)),
    ("code-length-default", lambda i: random_config(i, code_length=DELETE, code_prefix=DELETE)),
    ("custom-code-255", lambda i: custom_config(i, "A" * 255)),
    ("custom-code-all-chars", lambda i: custom_config(i, "Promo_2025-new-YEAR")),
    ("no-window", lambda i: custom_config(i, starts_at=DELETE, expires_at=DELETE)),
    ("only-starts", lambda i: custom_config(i, expires_at=DELETE)),
    ("only-expires", lambda i: custom_config(i, starts_at=DELETE)),
    (
        "starts-one-second-before-expires",
        lambda i: custom_config(
            i, starts_at="2025-01-31T23:59:58Z", expires_at="2025-01-31T23:59:59Z"
        ),
    ),
    ("global-1", lambda i: random_config(i, usage_limit={"limit_type": "global", "max_uses": 1})),
    (
        "unlimited",
        lambda i: random_config(i, usage_limit={"limit_type": "unlimited", "max_uses": DELETE}),
    ),
    ("auto-disabled-no-trigger", lambda i: random_config(i, **auto(None, enabled=False))),
    (
        "achievement",
        lambda i: random_config(i, **auto("achievement_completed", achievement_id="a")),
    ),
    (
        "streak-threshold-1",
        lambda i: random_config(
            i, **auto("streak_milestone", streak_id="s1", milestone_threshold=1)
        ),
    ),
    (
        "leaderboard-threshold-1",
        lambda i: random_config(
            i, **auto("leaderboard_rank", leaderboard_id="l", rank_threshold=1)
        ),
    ),
]


@pytest.mark.parametrize("build", [e[1] for e in EDGES], ids=[e[0] for e in EDGES])
async def test_valid_edges_are_accepted(
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
    build: Any,
) -> None:
    config = build(reward["item_id"])
    response = await post(client, tenant, admin["headers"], config)
    assert response.status_code == 201, response.text
    got = response.json()["config"]
    expected = {"case_sensitive": False, **config}
    if config["code_format"] == "random":
        expected.setdefault("code_length", 8)
    assert got == expected


async def test_several_broken_rules_are_all_named(
    client: httpx.AsyncClient, admin: dict[str, Any], reward: dict[str, Any], tenant: str
) -> None:
    config = random_config("nope", code_length=40, usage_limit={"max_uses": 0}, **auto(None))
    body = assert_error(
        await post(client, tenant, admin["headers"], config),
        422,
        "validation_error",
        [
            "config.reward_item_id",
            "config.code_length",
            "config.usage_limit.max_uses",
            "config.auto_generate.trigger",
        ],
    )
    assert len(body["details"]) == 4


async def test_reward_item_of_another_tenant_is_refused(
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
    make_key: KeyFactory,
) -> None:
    other_tenant = f"t-{uuid.uuid4().hex[:12]}"
    other = await make_key(tenant=other_tenant)
    theirs = await client.post(
        f"/v1/tenants/{other_tenant}/rewards",
        json={"name": "Theirs", "reward_type": "points"},
        headers=other["headers"],
    )
    assert theirs.status_code == 201, theirs.text
    their_item = theirs.json()["item_id"]

    response = await post(client, tenant, admin["headers"], random_config(their_item))
    body = assert_error(response, 422, "validation_error", ["config.reward_item_id"])
    assert_names(body, "config.reward_item_id", "this tenant")
    await assert_nothing_stored(client, tenant, admin["headers"])

    # nor can an update point an existing definition at it
    created = await post(client, tenant, admin["headers"], random_config(reward["item_id"]))
    assert created.status_code == 201, created.text
    url = coupons_url(tenant, created.json()["id"])
    response = await client.put(
        url, json={"config": {"reward_item_id": their_item}}, headers=admin["headers"]
    )
    assert_error(response, 422, "validation_error", ["config.reward_item_id"])
    assert (await client.get(url, headers=admin["headers"])).json() == created.json()
    # and it works in its own tenant
    response = await post(client, other_tenant, other["headers"], random_config(their_item))
    assert response.status_code == 201, response.text


async def test_deleted_reward_item_is_refused(
    client: httpx.AsyncClient, admin: dict[str, Any], reward: dict[str, Any], tenant: str
) -> None:
    url = f"/v1/tenants/{tenant}/rewards/{reward['item_id']}"
    assert (await client.delete(url, headers=admin["headers"])).status_code == 204
    response = await post(client, tenant, admin["headers"], random_config(reward["item_id"]))
    assert_error(response, 422, "validation_error", ["config.reward_item_id"])


async def test_custom_code_is_unique_in_the_tenant_ignoring_case(
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
    make_key: KeyFactory,
) -> None:
    first = await post(client, tenant, admin["headers"], custom_config(reward["item_id"]))
    assert first.status_code == 201, first.text

    for code in ("NEWYEAR2025", "newyear2025", "NewYear2025"):
        response = await post(
            client, tenant, admin["headers"], custom_config(reward["item_id"], code)
        )
        body = assert_error(response, 409, "custom_code_taken")
        assert body["conflicts"] == [{"field": "config.custom_code", "code": code}]
        assert code in body["message"]
    await assert_nothing_stored(client, tenant, admin["headers"], count=1)

    # another tenant may use the same code
    other_tenant = f"t-{uuid.uuid4().hex[:12]}"
    other = await make_key(tenant=other_tenant)
    item = await client.post(
        f"/v1/tenants/{other_tenant}/rewards",
        json={"name": "Theirs", "reward_type": "points"},
        headers=other["headers"],
    )
    assert item.status_code == 201, item.text
    response = await post(
        client, other_tenant, other["headers"], custom_config(item.json()["item_id"], "newyear2025")
    )
    assert response.status_code == 201, response.text
    assert response.json()["config"]["custom_code"] == "newyear2025"


async def test_update_to_a_taken_code_is_refused_and_a_free_one_releases_the_old(
    client: httpx.AsyncClient, admin: dict[str, Any], reward: dict[str, Any], tenant: str
) -> None:
    h = admin["headers"]
    item = reward["item_id"]
    spring = await post(client, tenant, h, custom_config(item, "SPRING"))
    summer = await post(client, tenant, h, custom_config(item, "SUMMER"))
    assert spring.status_code == 201 and summer.status_code == 201, (spring.text, summer.text)
    url = coupons_url(tenant, summer.json()["id"])

    response = await client.put(url, json={"config": {"custom_code": "spring"}}, headers=h)
    body = assert_error(response, 409, "custom_code_taken")
    assert body["conflicts"] == [{"field": "config.custom_code", "code": "spring"}]
    assert (await client.get(url, headers=h)).json() == summer.json()

    # a change of case only keeps the definition's own code
    response = await client.put(url, json={"config": {"custom_code": "Summer"}}, headers=h)
    assert response.status_code == 200, response.text
    assert response.json()["config"]["custom_code"] == "Summer"

    response = await client.put(url, json={"config": {"custom_code": "AUTUMN"}}, headers=h)
    assert response.status_code == 200, response.text
    assert response.json()["config"]["custom_code"] == "AUTUMN"

    # SUMMER is free again; AUTUMN is now taken
    reused = await post(client, tenant, h, custom_config(item, "summer"))
    assert reused.status_code == 201, reused.text
    assert_error(
        await post(client, tenant, h, custom_config(item, "autumn")), 409, "custom_code_taken"
    )


async def test_switching_a_custom_definition_to_random_releases_its_code(
    client: httpx.AsyncClient, admin: dict[str, Any], reward: dict[str, Any], tenant: str
) -> None:
    h = admin["headers"]
    created = await post(client, tenant, h, custom_config(reward["item_id"], "WINTER"))
    assert created.status_code == 201, created.text
    url = coupons_url(tenant, created.json()["id"])
    patch = {"code_format": "random", "custom_code": None, "code_length": 6}
    response = await client.put(url, json={"config": patch}, headers=h)
    assert response.status_code == 200, response.text
    config = response.json()["config"]
    assert "custom_code" not in config and config["code_length"] == 6
    again = await post(client, tenant, h, custom_config(reward["item_id"], "winter"))
    assert again.status_code == 201, again.text


# Merge patches whose merged config breaks a rule (the stored config is WELCOME-like).
MERGED: list[tuple[str, dict[str, Any], str]] = [
    ("code-length-40", {"code_length": 40}, "config.code_length"),
    ("code-length-3", {"code_length": 3}, "config.code_length"),
    ("max-uses-removed", {"usage_limit": {"max_uses": None}}, "config.usage_limit.max_uses"),
    (
        "limit-global-max-uses-0",
        {"usage_limit": {"limit_type": "global", "max_uses": 0}},
        "config.usage_limit.max_uses",
    ),
    (
        "window-reversed",
        {"starts_at": "2025-03-01T00:00:00Z", "expires_at": "2025-02-01T00:00:00Z"},
        "config.starts_at",
    ),
    ("auto-without-trigger", {"auto_generate": {"enabled": True}}, "config.auto_generate.trigger"),
    (
        "streak-threshold-0",
        {
            "auto_generate": {
                "enabled": True,
                "trigger": "streak_milestone",
                "trigger_config": {"streak_id": "s", "milestone_threshold": 0},
            }
        },
        "config.auto_generate.trigger_config.milestone_threshold",
    ),
    (
        "custom-without-clearing-random",
        {"code_format": "custom", "custom_code": "X1"},
        "config.code_length",
    ),
    ("reward-item-not-uuid", {"reward_item_id": "abc"}, "config.reward_item_id"),
    ("reward-item-unknown", {"reward_item_id": str(uuid.uuid4())}, "config.reward_item_id"),
    ("required-removed", {"usage_limit": None}, "config.usage_limit"),
    ("code-format-removed", {"code_format": None}, "config.code_format"),
    ("wrong-type", {"code_length": "eight"}, "config.code_length"),
    ("wrong-nested-type", {"usage_limit": {"max_uses": "one"}}, "config.usage_limit.max_uses"),
    ("unknown-config-field", {"colour": "red"}, "config.colour"),
    ("unknown-nested-field", {"usage_limit": {"per_day": 1}}, "config.usage_limit.per_day"),
]


@pytest.mark.parametrize(("patch", "field"), [m[1:] for m in MERGED], ids=[m[0] for m in MERGED])
async def test_update_validates_the_merged_config(
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
    patch: dict[str, Any],
    field: str,
) -> None:
    created = await post(client, tenant, admin["headers"], random_config(reward["item_id"]))
    assert created.status_code == 201, created.text
    url = coupons_url(tenant, created.json()["id"])
    response = await client.put(
        url, json={"name": "Renamed", "config": patch}, headers=admin["headers"]
    )
    assert_error(response, 422, "validation_error", [field])
    assert (await client.get(url, headers=admin["headers"])).json() == created.json()


@pytest.mark.parametrize(
    "content",
    [b'{"name": "x", ', b"{'name': 'x'}", b"not json at all", b'{"name": "x"}}'],
    ids=["truncated", "single-quotes", "text", "trailing-brace"],
)
async def test_malformed_json_is_422_naming_the_body(
    client: httpx.AsyncClient, admin: dict[str, Any], tenant: str, content: bytes
) -> None:
    headers = {**admin["headers"], "Content-Type": "application/json"}
    response = await client.post(coupons_url(tenant), content=content, headers=headers)
    body = assert_error(response, 422, "validation_error", ["body"])
    assert_names(body, "body", "json")


async def test_malformed_json_on_update_and_status(
    client: httpx.AsyncClient, admin: dict[str, Any], reward: dict[str, Any], tenant: str
) -> None:
    created = await post(client, tenant, admin["headers"], random_config(reward["item_id"]))
    assert created.status_code == 201, created.text
    url = coupons_url(tenant, created.json()["id"])
    headers = {**admin["headers"], "Content-Type": "application/json"}
    for target in (url, f"{url}/status"):
        response = await client.put(target, content=b'{"status": ', headers=headers)
        assert_error(response, 422, "validation_error", ["body"])


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ([], ["body"]),
        ("Welcome Bonus", ["body"]),
        ({}, ["name", "config"]),
        ({"name": "x"}, ["config"]),
        ({"name": 7, "config": "random"}, ["name", "config"]),
        ({"name": "", "config": {}}, ["name"]),
        ({"name": "x" * 201, "config": {}}, ["name"]),
        ({"name": "x", "description": 5, "config": {}}, ["description"]),
        (
            {"name": "x", "config": {}},
            ["config.reward_item_id", "config.code_format", "config.usage_limit"],
        ),
        (
            {
                "name": "x",
                "config": {
                    "reward_item_id": 5,
                    "code_format": "sequential",
                    "code_length": "eight",
                    "case_sensitive": "maybe",
                    "starts_at": "2025-01-01T00:00:00",
                    "expires_at": "tomorrow",
                    "usage_limit": {"limit_type": "per_day", "max_uses": 1.5},
                    "auto_generate": {
                        "enabled": "yes please",
                        "trigger": "level_up",
                        "trigger_config": {"rank_threshold": "first"},
                    },
                },
            },
            [
                "config.reward_item_id",
                "config.code_format",
                "config.code_length",
                "config.case_sensitive",
                "config.starts_at",
                "config.expires_at",
                "config.usage_limit.limit_type",
                "config.usage_limit.max_uses",
                "config.auto_generate.enabled",
                "config.auto_generate.trigger",
                "config.auto_generate.trigger_config.rank_threshold",
            ],
        ),
        ({"name": "x", "config": {"usage_limit": []}}, ["config.usage_limit"]),
        ({"name": "x", "config": {"auto_generate": {}}}, ["config.auto_generate.enabled"]),
        ({"name": "x", "config": {"usage_limit": {}}}, ["config.usage_limit.limit_type"]),
    ],
    ids=[
        "list",
        "string",
        "empty",
        "no-config",
        "wrong-top-level-types",
        "empty-name",
        "long-name",
        "description-int",
        "config-empty",
        "config-wrong-types",
        "usage-limit-list",
        "auto-generate-empty",
        "usage-limit-empty",
    ],
)
async def test_wrong_shapes_and_types_name_each_field(
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    tenant: str,
    body: Any,
    fields: list[str],
) -> None:
    response = await client.post(coupons_url(tenant), json=body, headers=admin["headers"])
    assert_error(response, 422, "validation_error", fields)
    await assert_nothing_stored(client, tenant, admin["headers"])


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"status": "paused"}, "status"),
        ({"id": "660e8400-e29b-41d4-a716-446655440001"}, "id"),
        ({"tenant_id": "someone"}, "tenant_id"),
        ({"created_at": "2025-01-15T10:00:00Z"}, "created_at"),
        ({"config": {"colour": "red"}}, "config.colour"),
        ({"config": {"max_uses": 3}}, "config.max_uses"),
        ({"config": {"usage_limit": {"per_day": 1}}}, "config.usage_limit.per_day"),
        ({"config": {"auto_generate": {"delay": 5}}}, "config.auto_generate.delay"),
        (
            {"config": {"auto_generate": {"trigger_config": {"quest_id": "q"}}}},
            "config.auto_generate.trigger_config.quest_id",
        ),
    ],
)
async def test_unknown_fields_are_refused(
    client: httpx.AsyncClient,
    admin: dict[str, Any],
    reward: dict[str, Any],
    tenant: str,
    extra: dict[str, Any],
    field: str,
) -> None:
    config = random_config(
        reward["item_id"], **auto("streak_milestone", streak_id="s", milestone_threshold=7)
    )
    body = patched({"name": "Unknown field", "config": config}, extra)
    response = await client.post(coupons_url(tenant), json=body, headers=admin["headers"])
    error = assert_error(response, 422, "validation_error", [field])
    assert [d["field"] for d in error["details"]] == [field]
    assert_names(error, field, "unknown")
    await assert_nothing_stored(client, tenant, admin["headers"])


async def test_trigger_config_fields_of_another_trigger_are_refused(
    client: httpx.AsyncClient, admin: dict[str, Any], reward: dict[str, Any], tenant: str
) -> None:
    config = random_config(
        reward["item_id"], **auto("achievement_completed", achievement_id="a", rank_threshold=2)
    )
    response = await post(client, tenant, admin["headers"], config)
    body = assert_error(
        response, 422, "validation_error", ["config.auto_generate.trigger_config.rank_threshold"]
    )
    assert_names(
        body, "config.auto_generate.trigger_config.rank_threshold", "achievement_completed"
    )


async def test_window_with_offsets_is_compared_in_utc_and_answered_in_utc(
    client: httpx.AsyncClient, admin: dict[str, Any], reward: dict[str, Any], tenant: str
) -> None:
    config = custom_config(
        reward["item_id"], starts_at="2025-01-01T10:00:00+02:00", expires_at="2025-01-01T08:30:00Z"
    )
    response = await post(client, tenant, admin["headers"], config)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["config"]["starts_at"] == "2025-01-01T08:00:00Z"
    assert created["config"]["expires_at"] == "2025-01-01T08:30:00Z"
    fetched = await client.get(coupons_url(tenant, created["id"]), headers=admin["headers"])
    assert fetched.json() == created
