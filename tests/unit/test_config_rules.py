"""The spec's validation table and the trigger rules, judged by the pure domain."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from phoenix_coupons.domain.config_rules import config_errors, validated
from phoenix_coupons.domain.errors import FieldError, ValidationFailed
from schemas.coupons import CouponConfig

REWARD = "3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b"
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def random_config(**overrides: Any) -> CouponConfig:
    data: dict[str, Any] = {
        "reward_item_id": REWARD,
        "code_format": "random",
        "usage_limit": {"limit_type": "unlimited"},
    }
    data.update(overrides)
    return CouponConfig.model_validate(data)


def custom_config(**overrides: Any) -> CouponConfig:
    return random_config(code_format="custom", custom_code="WELCOME-2030", **overrides)


def auto(trigger: str | None, enabled: bool = True, **trigger_config: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"enabled": enabled, "trigger": trigger}
    if trigger_config:
        body["trigger_config"] = trigger_config
    return body


def fields(config: CouponConfig) -> dict[str, str]:
    """field -> reason of every error; fails on a field reported twice."""
    errors = config_errors(config)
    out = {e.field: e.reason for e in errors}
    assert len(out) == len(errors), errors
    return out


def refused(config: CouponConfig, field: str) -> str:
    """The config is refused by `validated` for exactly `field`; returns the reason."""
    with pytest.raises(ValidationFailed) as info:
        validated(config)
    assert info.value.code == "validation_error"
    assert [d.field for d in info.value.details] == [field]
    reason = info.value.details[0].reason
    assert reason
    return reason


# --- valid configs ------------------------------------------------------------------------


def test_minimal_random_config_is_valid_and_gets_default_length() -> None:
    config = random_config()
    assert config.code_length is None
    assert config_errors(config) == []
    result = validated(config)
    assert result.code_length == 8
    assert result.case_sensitive is False
    assert result.model_dump(mode="json") == {
        "reward_item_id": REWARD,
        "code_format": "random",
        "code_length": 8,
        "case_sensitive": False,
        "usage_limit": {"limit_type": "unlimited"},
    }


def test_explicit_code_length_is_kept() -> None:
    assert validated(random_config(code_length=12)).code_length == 12


def test_custom_config_gets_no_code_length() -> None:
    result = validated(custom_config())
    assert result.code_length is None
    assert result.custom_code == "WELCOME-2030"


def test_custom_format_without_custom_code_is_valid() -> None:
    """The codes may come later, with the generate request's custom_codes."""
    assert validated(random_config(code_format="custom")).custom_code is None


def test_full_spec_example_is_valid() -> None:
    config = random_config(
        code_prefix="STREAK7",
        code_length=6,
        case_sensitive=True,
        starts_at=T0.isoformat(),
        expires_at=(T0 + timedelta(days=30)).isoformat(),
        usage_limit={"limit_type": "per_user", "max_uses": 1},
        auto_generate=auto("streak_milestone", streak_id="daily-login", milestone_threshold=7),
    )
    assert config_errors(config) == []
    assert validated(config) == config


# --- reward_item_id ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "not-a-uuid", "3f2b8c1e-9a4d-4e6f-8b7a", REWARD + "0"])
def test_reward_item_id_must_be_a_uuid(value: str) -> None:
    assert refused(random_config(reward_item_id=value), "config.reward_item_id") == (
        "must be a valid UUID"
    )


# --- code_length ------------------------------------------------------------------------


@pytest.mark.parametrize("length", [4, 5, 31, 32])
def test_code_length_inside_bounds_is_valid(length: int) -> None:
    assert validated(random_config(code_length=length)).code_length == length


@pytest.mark.parametrize("length", [-1, 0, 3, 33, 1000])
def test_code_length_outside_bounds_is_refused(length: int) -> None:
    reason = refused(random_config(code_length=length), "config.code_length")
    assert reason == "must be between 4 and 32"


def test_code_prefix_must_use_code_characters() -> None:
    refused(random_config(code_prefix="SUMMER SALE"), "config.code_prefix")
    assert validated(random_config(code_prefix="Summer_sale-1")).code_prefix == "Summer_sale-1"


def test_prefix_and_code_together_are_at_most_255() -> None:
    assert config_errors(random_config(code_prefix="P" * 223, code_length=32)) == []
    refused(random_config(code_prefix="P" * 224, code_length=32), "config.code_prefix")


# --- custom_code ------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["A", "abc", "Summer-2030_vip", "0123456789", "-", "_", "x" * 255])
def test_custom_code_accepts_letters_digits_hyphens_underscores(code: str) -> None:
    config = random_config(code_format="custom", custom_code=code)
    assert validated(config).custom_code == code


@pytest.mark.parametrize(
    "code", ["HAS SPACE", "dot.ted", "slash/", "emoji🎉", "ÄPFEL", "tab\t", "semi;colon", "a+b"]
)
def test_custom_code_refuses_other_characters(code: str) -> None:
    reason = refused(random_config(code_format="custom", custom_code=code), "config.custom_code")
    assert "hyphens" in reason


@pytest.mark.parametrize(
    "code", ["ACMESHARED\n", "\nACME", "AC\nME", "ACME\r\n", "ACME\u017fHARED", "\uff381"]
)
def test_custom_code_is_matched_whole_and_ascii(code: str) -> None:
    """`$` of `re.match` matches before a final newline: a full-string match is needed."""
    reason = refused(random_config(code_format="custom", custom_code=code), "config.custom_code")
    assert "hyphens" in reason


@pytest.mark.parametrize("prefix", ["ACME\n", "\nACME", "ACME\u017f"])
def test_code_prefix_is_matched_whole_and_ascii(prefix: str) -> None:
    refused(random_config(code_prefix=prefix), "config.code_prefix")


def test_custom_code_longer_than_255_is_refused() -> None:
    reason = refused(
        random_config(code_format="custom", custom_code="x" * 256), "config.custom_code"
    )
    assert "255" in reason


def test_empty_custom_code_is_refused() -> None:
    reason = refused(random_config(code_format="custom", custom_code=""), "config.custom_code")
    assert reason == "must not be empty"


# --- random / custom exclusivity ----------------------------------------------------------


def test_custom_code_is_refused_with_random_format() -> None:
    reason = refused(random_config(custom_code="WELCOME"), "config.custom_code")
    assert "custom" in reason


@pytest.mark.parametrize(
    ("field", "value"), [("code_prefix", "WELCOME"), ("code_length", 8), ("code_prefix", "")]
)
def test_random_only_fields_are_refused_with_custom_format(field: str, value: Any) -> None:
    reason = refused(custom_config(**{field: value}), f"config.{field}")
    assert "random" in reason


def test_both_random_fields_with_custom_are_each_reported() -> None:
    assert set(fields(custom_config(code_prefix="X", code_length=8))) == {
        "config.code_prefix",
        "config.code_length",
    }


# --- starts_at / expires_at ---------------------------------------------------------------


def test_starts_before_expires_is_valid() -> None:
    config = random_config(starts_at=T0, expires_at=T0 + timedelta(seconds=1))
    assert config_errors(config) == []


@pytest.mark.parametrize("delta", [timedelta(0), timedelta(seconds=-1), timedelta(days=-30)])
def test_starts_at_not_before_expires_at_is_refused(delta: timedelta) -> None:
    config = random_config(starts_at=T0, expires_at=T0 + delta)
    assert refused(config, "config.starts_at") == "must be before expires_at"


@pytest.mark.parametrize(
    ("starts_at", "expires_at"),
    [
        ("2030-01-01T02:00:00+02:00", "2030-01-01T00:00:00+00:00"),  # the same instant
        ("2030-01-01T01:00:00+00:00", "2030-01-01T02:00:00+02:00"),  # later, despite its text
    ],
)
def test_instants_are_compared_across_time_zones(starts_at: str, expires_at: str) -> None:
    refused(random_config(starts_at=starts_at, expires_at=expires_at), "config.starts_at")


@pytest.mark.parametrize("key", ["starts_at", "expires_at"])
def test_one_bound_alone_is_valid(key: str) -> None:
    assert config_errors(random_config(**{key: T0})) == []


# --- usage_limit.max_uses -----------------------------------------------------------------


@pytest.mark.parametrize("limit_type", ["per_user", "global"])
def test_max_uses_is_required_for_counted_limits(limit_type: str) -> None:
    reason = refused(
        random_config(usage_limit={"limit_type": limit_type}), "config.usage_limit.max_uses"
    )
    assert "required" in reason


@pytest.mark.parametrize("limit_type", ["per_user", "global"])
@pytest.mark.parametrize("max_uses", [0, -1])
def test_max_uses_must_be_positive(limit_type: str, max_uses: int) -> None:
    config = random_config(usage_limit={"limit_type": limit_type, "max_uses": max_uses})
    assert refused(config, "config.usage_limit.max_uses") == "must be greater than 0"


@pytest.mark.parametrize("limit_type", ["per_user", "global"])
def test_max_uses_of_one_is_valid(limit_type: str) -> None:
    config = random_config(usage_limit={"limit_type": limit_type, "max_uses": 1})
    assert validated(config).usage_limit.max_uses == 1


@pytest.mark.parametrize("max_uses", [1, 0])
def test_max_uses_is_refused_for_unlimited(max_uses: int) -> None:
    config = random_config(usage_limit={"limit_type": "unlimited", "max_uses": max_uses})
    assert "unlimited" in refused(config, "config.usage_limit.max_uses")


# --- auto_generate ------------------------------------------------------------------------


def test_enabled_auto_generate_needs_a_trigger() -> None:
    reason = refused(random_config(auto_generate=auto(None)), "config.auto_generate.trigger")
    assert "required" in reason


def test_disabled_auto_generate_needs_no_trigger() -> None:
    assert config_errors(random_config(auto_generate=auto(None, enabled=False))) == []


def test_trigger_config_without_trigger_is_refused() -> None:
    config = random_config(auto_generate=auto(None, enabled=False, achievement_id="a1"))
    refused(config, "config.auto_generate.trigger_config")


@pytest.mark.parametrize(
    ("trigger", "trigger_config"),
    [
        ("achievement_completed", {"achievement_id": "first-win"}),
        ("streak_milestone", {"streak_id": "daily", "milestone_threshold": 1}),
        ("leaderboard_rank", {"leaderboard_id": "weekly", "rank_threshold": 1}),
        ("leaderboard_rank", {"leaderboard_id": "weekly", "rank_threshold": 100}),
    ],
)
def test_each_trigger_with_its_fields_is_valid(
    trigger: str, trigger_config: dict[str, Any]
) -> None:
    config = random_config(auto_generate=auto(trigger, **trigger_config))
    assert config_errors(config) == []
    assert validated(config).auto_generate == config.auto_generate


@pytest.mark.parametrize(
    ("trigger", "trigger_config", "missing"),
    [
        ("achievement_completed", {}, {"achievement_id"}),
        ("streak_milestone", {}, {"streak_id", "milestone_threshold"}),
        ("streak_milestone", {"streak_id": "daily"}, {"milestone_threshold"}),
        ("streak_milestone", {"milestone_threshold": 7}, {"streak_id"}),
        ("leaderboard_rank", {}, {"leaderboard_id", "rank_threshold"}),
        ("leaderboard_rank", {"leaderboard_id": "weekly"}, {"rank_threshold"}),
        ("leaderboard_rank", {"rank_threshold": 3}, {"leaderboard_id"}),
    ],
)
def test_trigger_fields_are_required(
    trigger: str, trigger_config: dict[str, Any], missing: set[str]
) -> None:
    errors = fields(random_config(auto_generate=auto(trigger, **trigger_config)))
    assert errors == {
        f"config.auto_generate.trigger_config.{name}": f"is required for {trigger}"
        for name in missing
    }


def test_trigger_fields_are_required_even_when_disabled() -> None:
    config = random_config(auto_generate=auto("achievement_completed", enabled=False))
    refused(config, "config.auto_generate.trigger_config.achievement_id")


@pytest.mark.parametrize(
    ("trigger", "trigger_config", "field"),
    [
        ("streak_milestone", {"streak_id": "d", "milestone_threshold": 0}, "milestone_threshold"),
        ("streak_milestone", {"streak_id": "d", "milestone_threshold": -5}, "milestone_threshold"),
        ("leaderboard_rank", {"leaderboard_id": "w", "rank_threshold": 0}, "rank_threshold"),
        ("leaderboard_rank", {"leaderboard_id": "w", "rank_threshold": -1}, "rank_threshold"),
    ],
)
def test_thresholds_must_be_at_least_one(
    trigger: str, trigger_config: dict[str, Any], field: str
) -> None:
    config = random_config(auto_generate=auto(trigger, **trigger_config))
    reason = refused(config, f"config.auto_generate.trigger_config.{field}")
    assert reason == "must be at least 1"


@pytest.mark.parametrize(
    ("trigger", "trigger_config", "foreign"),
    [
        ("achievement_completed", {"achievement_id": "a", "streak_id": "s"}, "streak_id"),
        ("achievement_completed", {"achievement_id": "a", "rank_threshold": 3}, "rank_threshold"),
        (
            "streak_milestone",
            {"streak_id": "s", "milestone_threshold": 3, "leaderboard_id": "l"},
            "leaderboard_id",
        ),
        (
            "leaderboard_rank",
            {"leaderboard_id": "l", "rank_threshold": 3, "achievement_id": "a"},
            "achievement_id",
        ),
        (
            "leaderboard_rank",
            {"leaderboard_id": "l", "rank_threshold": 3, "milestone_threshold": 3},
            "milestone_threshold",
        ),
    ],
)
def test_fields_of_other_triggers_are_refused(
    trigger: str, trigger_config: dict[str, Any], foreign: str
) -> None:
    config = random_config(auto_generate=auto(trigger, **trigger_config))
    reason = refused(config, f"config.auto_generate.trigger_config.{foreign}")
    assert reason == f"is not used by {trigger}"


def test_auto_generation_needs_random_format() -> None:
    config = custom_config(auto_generate=auto("achievement_completed", achievement_id="a"))
    assert "random" in refused(config, "config.auto_generate.enabled")


def test_disabled_auto_generation_is_allowed_with_custom_format() -> None:
    config = custom_config(
        auto_generate=auto("achievement_completed", enabled=False, achievement_id="a")
    )
    assert config_errors(config) == []


# --- reporting ------------------------------------------------------------------------------


def test_every_broken_rule_is_reported_at_once_with_config_paths() -> None:
    config = random_config(
        reward_item_id="nope",
        code_length=3,
        custom_code="bad code",
        starts_at=T0,
        expires_at=T0,
        usage_limit={"limit_type": "global", "max_uses": 0},
        auto_generate=auto(
            "streak_milestone", streak_id="s", milestone_threshold=0, achievement_id="a"
        ),
    )
    with pytest.raises(ValidationFailed) as info:
        validated(config)
    details = info.value.details
    assert all(isinstance(d, FieldError) for d in details)
    assert all(d.field.startswith("config.") and d.reason for d in details)
    assert {d.field for d in details} == {
        "config.reward_item_id",
        "config.code_length",
        "config.custom_code",
        "config.starts_at",
        "config.usage_limit.max_uses",
        "config.auto_generate.trigger_config.milestone_threshold",
        "config.auto_generate.trigger_config.achievement_id",
    }
    assert info.value.message == "invalid coupon config"


def test_custom_format_errors_are_all_reported() -> None:
    config = random_config(
        code_format="custom",
        custom_code="",
        code_prefix="P",
        usage_limit={"limit_type": "per_user"},
        auto_generate=auto(None),
    )
    assert set(fields(config)) == {
        "config.custom_code",
        "config.code_prefix",
        "config.usage_limit.max_uses",
        "config.auto_generate.trigger",
        "config.auto_generate.enabled",
    }
