"""RFC 7396 JSON merge patch, as PUT applies it to a stored config."""

import copy
from typing import Any

import pytest

from phoenix_coupons.domain.config_rules import merge_patch

# RFC 7396, Appendix A (the cases whose target and patch are objects).
RFC_EXAMPLES: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({"a": "foo"}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC_EXAMPLES)
def test_rfc_7396_examples(
    target: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert merge_patch(target, patch) == expected


def test_nested_objects_merge_and_untouched_keys_stay() -> None:
    target = {
        "code_format": "random",
        "usage_limit": {"limit_type": "per_user", "max_uses": 1},
        "auto_generate": {
            "enabled": True,
            "trigger": "streak_milestone",
            "trigger_config": {"streak_id": "daily", "milestone_threshold": 7},
        },
    }
    patch = {
        "usage_limit": {"max_uses": 3},
        "auto_generate": {"trigger_config": {"milestone_threshold": 30}},
    }
    assert merge_patch(target, patch) == {
        "code_format": "random",
        "usage_limit": {"limit_type": "per_user", "max_uses": 3},
        "auto_generate": {
            "enabled": True,
            "trigger": "streak_milestone",
            "trigger_config": {"streak_id": "daily", "milestone_threshold": 30},
        },
    }


def test_null_deletes_at_any_depth_and_missing_keys_are_ignored() -> None:
    target = {"code_prefix": "OLD", "usage_limit": {"limit_type": "global", "max_uses": 5}}
    patch = {
        "code_prefix": None,
        "expires_at": None,
        "usage_limit": {"limit_type": "unlimited", "max_uses": None},
    }
    assert merge_patch(target, patch) == {"usage_limit": {"limit_type": "unlimited"}}


def test_arrays_replace_whole() -> None:
    assert merge_patch({"tags": [1, 2, 3]}, {"tags": [4]}) == {"tags": [4]}
    assert merge_patch({"tags": [1, 2]}, {"tags": []}) == {"tags": []}


def test_an_object_replaces_a_scalar_and_a_scalar_replaces_an_object() -> None:
    assert merge_patch({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}
    assert merge_patch({"a": {"b": 2}}, {"a": 1}) == {"a": 1}


def test_falsy_values_replace_rather_than_delete() -> None:
    target = {"a": 1, "b": "x", "c": True, "d": [1], "e": {"f": 1}}
    patch = {"a": 0, "b": "", "c": False, "d": [], "e": {}}
    assert merge_patch(target, patch) == {"a": 0, "b": "", "c": False, "d": [], "e": {"f": 1}}


def test_empty_patch_is_identity() -> None:
    target = {"a": {"b": [1]}}
    assert merge_patch(target, {}) == target


def test_inputs_are_not_modified() -> None:
    target = {"a": {"b": 1, "c": 2}, "d": 3}
    patch = {"a": {"b": None, "e": {"f": None, "g": 4}}, "d": None}
    target_before, patch_before = copy.deepcopy(target), copy.deepcopy(patch)
    assert merge_patch(target, patch) == {"a": {"c": 2, "e": {"g": 4}}}
    assert target == target_before
    assert patch == patch_before
