"""Code patterns and character sets over HTTP, on the embedded servers: definitions with
`code_pattern` / `charset` created, refused and updated; bulk generation drawing codes of
the pattern into the pattern's own code space; the capacity refusal of a small pattern."""

import re
from typing import Any

import httpx

from phoenix_coupons.adapters import counter_keys
from phoenix_coupons.adapters.counters import MongoCounters
from phoenix_coupons.bootstrap import Container
from tests.integration.test_generation import create_definition, generate, issued, users
from tests.integration.test_openapi import assert_error
from tests.integration.test_valid_for import config, create

Json = dict[str, Any]
U_LETTER = "[ABCDEFGHJKMNPQRSTUVWXYZ]"


async def space_count(container: Container, tenant: str, space: str) -> int:
    return await MongoCounters(container.mongo).get(counter_keys.space(tenant, space))


async def test_a_pattern_definition_generates_codes_of_its_pattern(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    defn = await create_definition(client, tenant, admin, reward, code_pattern="SUMMER-####-????")
    # The body shows what was sent: no code_length default, no charset unless given.
    assert defn["config"] == config(reward, code_pattern="SUMMER-####-????", case_sensitive=False)
    got = await client.get(f"/v1/tenants/{tenant}/coupons/{defn['id']}", headers=admin["headers"])
    assert got.json()["config"] == defn["config"]

    response = await generate(client, tenant, defn["id"], admin, {"user_ids": users(300)})
    assert response.status_code == 201, response.text
    codes = [c["code"] for c in response.json()["coupons"]]
    shape = re.compile(f"SUMMER-[2-9]{{4}}-{U_LETTER}{{4}}")
    assert all(shape.fullmatch(c) for c in codes), [c for c in codes if not shape.fullmatch(c)]
    assert len(set(codes)) == 300
    stored = await issued(container, tenant)
    assert {d["code_space"] for d in stored} == {"SUMMER-{udigit:4}-{uletter:4}"}
    assert await space_count(container, tenant, "SUMMER-{udigit:4}-{uletter:4}") == 300


async def test_each_charset_draws_its_characters(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    cases = [
        ({"code_pattern": "mix-**??##", "charset": "alphanumeric", "case_sensitive": True},
         r"mix-[A-Za-z0-9]{2}[A-Za-z]{2}[0-9]{2}", "MIX-{alnum:2}{letter:2}{digit:2}"),
        ({"code_prefix": "N-", "code_length": 6, "charset": "numeric"},
         r"N-[0-9]{6}", "N-{digit:6}"),
        ({"code_pattern": "AB-?????", "charset": "alphabetic"},
         r"AB-[A-Z]{5}", "AB-{letter:5}"),
        ({"code_pattern": "u-********", "charset": "unambiguous"},
         r"U-[A-HJKMNP-Z2-9]{8}", "U-:8"),
    ]  # fmt: skip
    for i, (shape, pattern, space) in enumerate(cases):
        defn = await create_definition(client, tenant, admin, reward, **shape)
        assert {k: defn["config"][k] for k in shape} == shape
        response = await generate(
            client, tenant, defn["id"], admin, {"user_ids": users(200, tag=f"c{i}")}
        )
        assert response.status_code == 201, response.text
        codes = [c["code"] for c in response.json()["coupons"]]
        assert all(re.fullmatch(pattern, c) for c in codes), (shape, codes[:5])
        assert await space_count(container, tenant, space) == 200, shape
    mixed = [d["code"][4:] for d in await issued(container, tenant) if d["code"].startswith("mix")]
    assert any(c != c.upper() for c in mixed), "case-sensitive codes draw lower case too"
    # A pattern of the default charset's `*` run is the same space as a prefix and length.
    plain = await create_definition(client, tenant, admin, reward, code_prefix="U-")
    response = await generate(client, tenant, plain["id"], admin, {"user_ids": ["one"]})
    assert response.status_code == 201, response.text
    assert await space_count(container, tenant, "U-:8") == 201


async def test_invalid_patterns_and_charsets_are_refused_naming_the_field(
    client: httpx.AsyncClient, admin: Json, reward: Json, tenant: str
) -> None:
    cases: list[tuple[Json, list[str], str]] = [
        ({"code_pattern": "X-####", "code_prefix": "X-"}, ["config.code_prefix"], "code_pattern"),
        ({"code_pattern": "X-####", "code_length": 8}, ["config.code_length"], "code_pattern"),
        (
            {"code_pattern": "X-####", "code_prefix": "X", "code_length": 8},
            ["config.code_prefix", "config.code_length"],
            "code_pattern",
        ),
        ({"code_pattern": "X-####", "charset": "alphabetic"}, ["config.code_pattern"], "digit"),
        ({"code_pattern": "X-????", "charset": "numeric"}, ["config.code_pattern"], "letter"),
        ({"code_pattern": "SUMMER"}, ["config.code_pattern"], "placeholders"),
        ({"code_pattern": "#" * 33}, ["config.code_pattern"], "32"),
        ({"code_pattern": "X ####"}, ["config.code_pattern"], "ASCII"),
        ({"code_pattern": "A" * 256}, ["config.code_pattern"], "255"),
        ({"charset": "hex"}, ["config.charset"], "unambiguous"),
        (
            {"code_format": "custom", "custom_code": "GIFT", "code_pattern": "####"},
            ["config.code_pattern"],
            "random",
        ),
        (
            {"code_format": "custom", "custom_code": "GIFT", "charset": "numeric"},
            ["config.charset"],
            "random",
        ),
    ]
    for fields, named, words in cases:
        response = await create(client, tenant, admin, config(reward, **fields))
        body = assert_error(response, 422, "validation_error", named)
        assert [d["field"] for d in body["details"]] == named, body
        assert all(words in d["reason"] for d in body["details"]), body


async def test_an_update_switches_a_definition_to_a_pattern_and_back(
    client: httpx.AsyncClient, admin: Json, reward: Json, tenant: str
) -> None:
    defn = await create_definition(client, tenant, admin, reward, code_prefix="OLD-")
    url = f"/v1/tenants/{tenant}/coupons/{defn['id']}"
    # The stored config shows code_length 8: a pattern alone would contradict it.
    response = await client.put(
        url, json={"config": {"code_pattern": "NEW-##??"}}, headers=admin["headers"]
    )
    assert_error(response, 422, "validation_error", ["config.code_prefix", "config.code_length"])
    patch = {"code_pattern": "NEW-##??", "code_prefix": None, "code_length": None}
    response = await client.put(url, json={"config": patch}, headers=admin["headers"])
    assert response.status_code == 200, response.text
    cfg = response.json()["config"]
    assert cfg["code_pattern"] == "NEW-##??"
    assert "code_length" not in cfg and "code_prefix" not in cfg
    made = await generate(client, tenant, defn["id"], admin, {"user_ids": ["a", "b"]})
    assert made.status_code == 201, made.text
    assert all(
        re.fullmatch(f"NEW-[2-9]{{2}}{U_LETTER}{{2}}", c["code"]) for c in made.json()["coupons"]
    )
    # null removes the pattern: the prefix-and-length default comes back.
    response = await client.put(
        url, json={"config": {"code_pattern": None}}, headers=admin["headers"]
    )
    assert response.status_code == 200, response.text
    assert response.json()["config"]["code_length"] == 8


async def test_a_request_past_the_pattern_s_capacity_is_refused_before_generating(
    client: httpx.AsyncClient, container: Container, admin: Json, reward: Json, tenant: str
) -> None:
    """`CARD-##` of charset numeric holds 100 codes, of which half may be used."""
    card = await create_definition(
        client, tenant, admin, reward, code_pattern="CARD-##", charset="numeric"
    )
    response = await generate(client, tenant, card["id"], admin, {"user_ids": users(51)})
    body = assert_error(response, 422, "code_space_exhausted", ["user_ids"])
    assert "space 100" in body["message"], body
    assert await issued(container, tenant) == []

    response = await generate(client, tenant, card["id"], admin, {"user_ids": users(50)})
    assert response.status_code == 201, response.text
    assert all(re.fullmatch(r"CARD-[0-9]{2}", c["code"]) for c in response.json()["coupons"])
    assert await space_count(container, tenant, "CARD-{digit:2}") == 50

    # Another definition of the same space (`*` of numeric is a digit) finds it full ...
    same = await create_definition(
        client, tenant, admin, reward, code_pattern="card-**", charset="numeric"
    )
    response = await generate(client, tenant, same["id"], admin, {"user_ids": ["late"]})
    assert_error(response, 422, "code_space_exhausted", ["user_ids"])
    # ... one of letters is another space, with its own count.
    other = await create_definition(client, tenant, admin, reward, code_pattern="CARD-??")
    response = await generate(client, tenant, other["id"], admin, {"user_ids": users(32, "o")})
    assert response.status_code == 201, response.text
    assert await space_count(container, tenant, "CARD-{uletter:2}") == 32
    assert await space_count(container, tenant, "CARD-{digit:2}") == 50
    assert len(await issued(container, tenant)) == 82
