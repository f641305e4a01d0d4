"""The sharding rule on every declared collection: each unique index starts with its
collection's shard key, and a collection relying on `_id` uniqueness is sharded on `_id`
(a sharded cluster enforces neither otherwise); the rule fails on wrong declarations."""

import json
from dataclasses import replace

import pytest

from phoenix_coupons.adapters import shard_plan
from phoenix_coupons.adapters.mongo_schema import (
    ASC,
    HASHED_ID,
    Collection,
    Index,
    collections,
)
from phoenix_coupons.adapters.shard_plan import starts_with, violations

DECLARED = collections(3600)


@pytest.mark.parametrize("collection", DECLARED, ids=lambda c: c.name)
def test_every_declared_collection_keeps_the_rule(collection: Collection) -> None:
    assert violations(collection) == []


def test_every_collection_declares_a_shard_key_and_the_names_are_distinct() -> None:
    assert all(c.shard_key for c in DECLARED)
    assert len({c.name for c in DECLARED}) == len(DECLARED)


@pytest.mark.parametrize(
    "name",
    [
        "api_keys",
        "codes",
        "coupons",
        "counters",
        "idempotency_keys",
        "migrations",
        "outbox",
        "redemption_slots",
    ],
)
def test_collections_keyed_by_id_are_sharded_on_it(name: str) -> None:
    (collection,) = [c for c in DECLARED if c.name == name]
    assert collection.id_unique and collection.shard_key == HASHED_ID


def test_a_unique_index_the_shard_key_does_not_lead_fails_the_rule() -> None:
    """Today's coupons: `_id` (one coupon per issue key) and (tenant_id, code_norm) unique."""
    wrong = Collection("coupons", (Index((("tenant_id", ASC), ("code_norm", ASC)), unique=True),))
    assert violations(wrong) == [
        "coupons: unique index {'tenant_id': 1, 'code_norm': 1} does not start with the "
        "shard key {'_id': 'hashed'}: a sharded cluster cannot enforce it"
    ]


def test_sharding_on_the_unique_fields_instead_breaks_id_uniqueness() -> None:
    """The other choice for today's coupons: the code index holds, one coupon per issue key
    (its `_id`) does not."""
    wrong = Collection(
        "coupons",
        (Index((("tenant_id", ASC), ("code_norm", ASC)), unique=True),),
        shard_key=(("tenant_id", ASC), ("code_norm", ASC)),
    )
    assert violations(wrong) == [
        "coupons: relies on `_id` uniqueness but is sharded on "
        "{'tenant_id': 1, 'code_norm': 1}: `_id` would be unique per shard only"
    ]
    assert violations(replace(wrong, id_unique=False)) == []
    assert violations(Collection("c", shard_key=(("tenant_id", ASC),), id_unique=False)) == []


def test_an_index_starts_with_the_shard_key_by_fields_not_directions() -> None:
    assert starts_with((("_id", ASC), ("state", ASC)), HASHED_ID)
    assert starts_with((("tenant_id", ASC), ("code", ASC)), (("tenant_id", "hashed"),))
    assert not starts_with((("state", ASC), ("_id", ASC)), HASHED_ID)
    assert not starts_with((("tenant_id", ASC),), (("tenant_id", ASC), ("code", ASC)))
    # A unique index on `_id` and another field is enforced with `_id` as the shard key.
    keyed = Collection("x", (Index((("_id", ASC), ("v", ASC)), unique=True),))
    assert violations(keyed) == []


def test_the_plan_shards_each_collection_on_its_declared_key() -> None:
    declared = [
        Collection("api_keys"),
        Collection("events", shard_key=(("tenant_id", ASC), ("at", ASC)), id_unique=False),
    ]
    assert shard_plan.script("phoenix", declared) == (
        'sh.enableSharding("phoenix");\n'
        'sh.shardCollection("phoenix.api_keys", {"_id": "hashed"});\n'
        'sh.shardCollection("phoenix.events", {"tenant_id": 1, "at": 1});\n'
    )


def test_the_command_prints_the_plan_of_every_declared_collection(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert shard_plan.main(["--database", "shop"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == 'sh.enableSharding("shop");'
    keys = {c.name: ", ".join(f'"{k}": {json.dumps(v)}' for k, v in c.shard_key) for c in DECLARED}
    assert lines[1:] == [
        f'sh.shardCollection("shop.{c.name}", {{{keys[c.name]}}});' for c in DECLARED
    ]
    assert keys["code_history"] == '"_id": 1'  # a code's timeline is one range on one shard


def test_the_command_refuses_a_declaration_that_breaks_the_rule(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = Collection("coupons", (Index((("code", ASC),), unique=True),))
    monkeypatch.setattr(shard_plan, "collections", lambda ttl: [Collection("ok"), wrong])
    assert shard_plan.main([]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert "coupons: unique index {'code': 1} does not start with the shard key" in out.err
