"""The decisions `ensure_indexes` takes, on index listings and errors as MongoDB answers them
(the embedded server raises none of these codes and has no collMod)."""

from typing import Any

import pytest
from pymongo.errors import OperationFailure

from phoenix_coupons.adapters.mongo import _model
from phoenix_coupons.adapters.mongo_schema import (
    CODES,
    COUPONS,
    DEFINITIONS,
    OUTBOX,
    REWARDS,
    Collection,
    Index,
    IndexConflict,
    Keys,
    concurrent_change,
    idempotency,
    plan,
)

ID = {"v": 2, "key": [("_id", 1)]}


def listing(collection: Collection) -> dict[str, Any]:
    """`index_information()` of a collection holding exactly its declared indexes."""
    found: dict[str, Any] = {"_id_": ID}
    for index in collection.indexes:
        info: dict[str, Any] = {"v": 2, "key": list(index.keys)}
        if index.unique:
            info["unique"] = True
        if index.expire_after_seconds is not None:
            info["expireAfterSeconds"] = index.expire_after_seconds
        found["_".join(f"{k}_{d}" for k, d in index.keys)] = info
    return found


def test_a_collection_with_its_declared_indexes_needs_nothing() -> None:
    for collection in (COUPONS, DEFINITIONS, REWARDS, idempotency(3600)):
        assert plan(collection, listing(collection)).done


def test_missing_indexes_are_created() -> None:
    todo = plan(COUPONS, {"_id_": ID})
    assert todo.create == list(COUPONS.indexes)
    assert (todo.drop, todo.set_ttl) == ([], [])


def test_a_changed_ttl_is_set_on_the_index_not_created_again() -> None:
    """createIndexes with another expireAfterSeconds fails on MongoDB with
    IndexOptionsConflict (85) in every process: the TTL is changed with collMod."""
    todo = plan(idempotency(7200), listing(idempotency(3600)))
    assert todo.set_ttl == list(idempotency(7200).indexes)
    assert (todo.create, todo.drop) == ([], [])


def test_retired_indexes_are_dropped_by_key_whatever_their_name() -> None:
    existing = {
        **listing(COUPONS),
        "trigger_event_id_1": {"v": 2, "key": [("trigger_event_id", 1)]},
        "by_issue_key": {"v": 2, "key": [("issue_key", 1)], "unique": True},
        "tenant_id_1_user_id_1": {"v": 2, "key": [("tenant_id", 1), ("user_id", 1)]},
        "definition_id_1_user_id_1": {"v": 2, "key": [("definition_id", 1), ("user_id", 1)]},
        "an_operators_own": {"v": 2, "key": [("status", 1)]},
    }
    todo = plan(COUPONS, existing)
    assert sorted(todo.drop) == [
        "by_issue_key",
        "definition_id_1_user_id_1",
        "tenant_id_1_user_id_1",
        "trigger_event_id_1",
    ]
    assert (todo.create, todo.set_ttl) == ([], [])


def test_a_declared_index_is_kept_even_if_also_retired() -> None:
    keys: Keys = (("a", 1),)
    collection = Collection("c", (Index(keys),), retired=(keys,))
    assert plan(collection, {"a_1": {"key": [("a", 1)]}}).done


def test_key_directions_stored_as_doubles_match() -> None:
    existing = {"created_at_1": {"key": [("created_at", 1.0)], "expireAfterSeconds": 3600.0}}
    assert plan(idempotency(3600), existing).done


@pytest.mark.parametrize(
    ("collection", "info"),
    [
        (COUPONS, {"key": [("by_definition", 1)], "unique": True}),  # declared not unique
        (COUPONS, {"key": [("by_user", 1)], "unique": True}),
        (OUTBOX, {"key": [("state", 1)], "expireAfterSeconds": 60}),
    ],
)
def test_other_uniqueness_or_an_unwanted_ttl_is_no_start_ups_decision(
    collection: Collection, info: Any
) -> None:
    with pytest.raises(IndexConflict, match="drop it"):
        plan(collection, {"x": info})


def failure(code: int, name: str, message: str) -> OperationFailure:
    """An OperationFailure as PyMongo raises it from a server's error reply."""
    reply = {"ok": 0.0, "errmsg": message, "code": code, "codeName": name}
    return OperationFailure(message, code, reply, 21)


@pytest.mark.parametrize(
    ("code", "name", "message"),
    [
        (
            85,
            "IndexOptionsConflict",
            "An equivalent index already exists with the same name but different options. "
            "Requested index: { v: 2, key: { created_at: 1 }, name: 'created_at_1', "
            "expireAfterSeconds: 7200 }, existing index: { v: 2, key: { created_at: 1 }, "
            "name: 'created_at_1', expireAfterSeconds: 3600 }",
        ),
        (
            86,
            "IndexKeySpecsConflict",
            "An existing index has the same name as the requested index. When index names are "
            "not specified, they are auto generated and can cause conflicts.",
        ),
        (27, "IndexNotFound", "index not found with name [trigger_event_id_1]"),
        (26, "NamespaceNotFound", "ns not found phoenix.idempotency_keys"),
        (68, "IndexAlreadyExists", "index already exists"),
        (276, "IndexBuildAborted", "Index build aborted"),
        (285, "IndexBuildAlreadyInProgress", "Index build already in progress"),
    ],
)
def test_an_index_changed_by_another_process_means_plan_again(
    code: int, name: str, message: str
) -> None:
    assert concurrent_change(failure(code, name, message))


@pytest.mark.parametrize(
    ("code", "name"),
    [(13, "Unauthorized"), (67, "CannotCreateIndex"), (11000, "DuplicateKey"), (2, "BadValue")],
)
def test_other_failures_are_not_taken_for_a_race(code: int, name: str) -> None:
    assert not concurrent_change(failure(code, name, "refused"))


def declared(collection: Collection) -> set[Keys]:
    return {index.keys for index in collection.indexes}


def test_each_list_has_a_single_field_index_of_its_list_key() -> None:
    """One single-field index per list (list_keys.py): its range, sorted on the same field,
    is read in index order on MongoDB, and the embedded server (which never uses compound
    indexes) keeps it flat."""
    assert (("by_definition", 1),) in declared(COUPONS)  # a definition's codes
    assert (("by_user", 1),) in declared(COUPONS)  # wallet
    assert (("by_tenant", 1),) in declared(DEFINITIONS)
    assert (("by_status", 1),) in declared(DEFINITIONS)  # all tenants
    assert (("by_tenant", 1),) in declared(REWARDS)


def test_the_sweeps_index_holds_only_unconfirmed_claims() -> None:
    """Sparse: claims are confirmed within moments, so the sweep's index stays small."""
    (index,) = CODES.indexes
    assert index.keys == (("unconfirmed", 1),) and index.sparse and not index.unique
    assert _model(index).document["sparse"] is True
