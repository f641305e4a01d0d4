"""The spec's validation table for coupon configs, plus the trigger rules.
Pure: the existence of the reward item and code uniqueness are the service's to check."""

import re
import uuid
from datetime import timedelta
from typing import Any

from phoenix_coupons.domain import durations
from phoenix_coupons.domain.code_patterns import DEFAULT_CHARSET, CodeSpec, pattern_reason
from phoenix_coupons.domain.errors import FieldError, ValidationFailed
from schemas.bounds import CODE_LENGTH_MAX, CODE_LENGTH_MIN, CODE_MAX_LENGTH, CODE_PATTERN
from schemas.coupons import CouponConfig

DEFAULT_CODE_LENGTH = 8
MIN_CODE_LENGTH, MAX_CODE_LENGTH = CODE_LENGTH_MIN, CODE_LENGTH_MAX
MAX_CODE_CHARS = CODE_MAX_LENGTH
# Matched with fullmatch: `re`'s `$` also matches before a final newline ("ACME\n").
CODE_CHARS = re.compile(CODE_PATTERN)
CODE_CHARS_REASON = "only ASCII letters, digits, hyphens and underscores are allowed"

# Which trigger_config fields each trigger needs; thresholds must be >= 1.
TRIGGER_FIELDS: dict[str, tuple[str, ...]] = {
    "achievement_completed": ("achievement_id",),
    "streak_milestone": ("streak_id", "milestone_threshold"),
    "leaderboard_rank": ("leaderboard_id", "rank_threshold"),
}
THRESHOLDS = ("milestone_threshold", "rank_threshold")


def code_length(config: CouponConfig) -> int:
    """The length of a random code: the config's, else the default."""
    return config.code_length if config.code_length is not None else DEFAULT_CODE_LENGTH


def code_spec(config: CouponConfig) -> CodeSpec:
    """What a random-format definition's codes look like: its pattern, else its prefix and
    code_length characters of its charset."""
    charset = config.charset or DEFAULT_CHARSET
    if config.code_pattern is not None:
        return CodeSpec(config.code_pattern, config.case_sensitive, charset)
    return CodeSpec.random(
        config.code_prefix or "", code_length(config), config.case_sensitive, charset
    )


def with_defaults(config: CouponConfig) -> CouponConfig:
    """Fill the defaults the spec's responses show (code_length 8 for random codes without
    a pattern). The charset's default is not written: the spec's bodies stay as they are."""
    if (
        config.code_format == "random"
        and config.code_length is None
        and config.code_pattern is None
    ):
        return config.model_copy(update={"code_length": DEFAULT_CODE_LENGTH})
    return config


def code_reason(code: str) -> str | None:
    """Why `code` is not a valid custom code, or None when it is."""
    if not code:
        return "must not be empty"
    if len(code) > MAX_CODE_CHARS:
        return f"must be at most {MAX_CODE_CHARS} characters"
    if not CODE_CHARS.fullmatch(code):
        return CODE_CHARS_REASON
    return None


def config_errors(config: CouponConfig) -> list[FieldError]:
    errors: list[FieldError] = []

    def bad(field: str, reason: str) -> None:
        errors.append(FieldError(f"config.{field}", reason))

    try:
        uuid.UUID(config.reward_item_id)
    except ValueError:
        bad("reward_item_id", "must be a valid UUID")

    if config.code_format == "random":
        errors.extend(_random_code_errors(config))
        if config.custom_code is not None:
            bad("custom_code", "is only allowed with code_format 'custom'")
    else:
        for name in ("code_prefix", "code_length", "code_pattern", "charset"):
            if getattr(config, name) is not None:
                bad(name, "is only allowed with code_format 'random'")
        if config.custom_code is not None and (reason := code_reason(config.custom_code)):
            bad("custom_code", reason)

    if config.starts_at and config.expires_at and config.starts_at >= config.expires_at:
        bad("starts_at", "must be before expires_at")

    limit = config.usage_limit
    if limit.limit_type == "unlimited":
        if limit.max_uses is not None:
            bad("usage_limit.max_uses", "is not allowed with limit_type 'unlimited'")
    elif limit.max_uses is None:
        bad("usage_limit.max_uses", f"is required for limit_type '{limit.limit_type}'")
    elif limit.max_uses <= 0:
        bad("usage_limit.max_uses", "must be greater than 0")

    errors.extend(_auto_generate_errors(config))
    errors.extend(_lifecycle_errors(config))
    return errors


def _random_code_errors(config: CouponConfig) -> list[FieldError]:
    """A pattern, or a prefix and code_length (not both); the pattern's placeholders drawn
    from what the charset has."""
    errors: list[FieldError] = []

    def bad(field: str, reason: str) -> None:
        errors.append(FieldError(f"config.{field}", reason))

    if config.code_pattern is not None:
        for name in ("code_prefix", "code_length"):
            if getattr(config, name) is not None:
                bad(
                    name,
                    "is not allowed with code_pattern, which gives the whole code "
                    "(null removes it)",
                )
        if reason := pattern_reason(config.code_pattern, config.charset or DEFAULT_CHARSET):
            bad("code_pattern", reason)
        return errors
    length = code_length(config)
    if not MIN_CODE_LENGTH <= length <= MAX_CODE_LENGTH:
        bad("code_length", f"must be between {MIN_CODE_LENGTH} and {MAX_CODE_LENGTH}")
        length = 0  # already reported: do not blame the prefix for it too
    prefix = config.code_prefix or ""
    if prefix and not CODE_CHARS.fullmatch(prefix):
        bad("code_prefix", CODE_CHARS_REASON)
    elif len(prefix) + length > MAX_CODE_CHARS:
        bad("code_prefix", f"prefix and code together must be at most {MAX_CODE_CHARS}")
    return errors


def _lifecycle_errors(config: CouponConfig) -> list[FieldError]:
    """valid_for and remind_before: durations within bounds; valid_for only where coupons
    are issued to users; reminders only where coupons can expire."""
    errors: list[FieldError] = []
    if config.valid_for is not None:
        if config.code_format == "custom":
            errors.append(
                FieldError(
                    "config.valid_for",
                    "is not allowed with code_format 'custom': its one shared code has no issuance",
                )
            )
        elif reason := durations.reason(config.valid_for):
            errors.append(FieldError("config.valid_for", reason))
    if config.uses_per_code is not None and config.uses_per_code < 1:
        errors.append(FieldError("config.uses_per_code", "must be at least 1"))
    elif config.uses_per_code is not None and config.code_format == "custom":
        errors.append(
            FieldError(
                "config.uses_per_code",
                "is not allowed with code_format 'custom': unassigned codes are drawn at random",
            )
        )
    if config.issuance_limit is not None and config.issuance_limit.max_coupons < 1:
        errors.append(FieldError("config.issuance_limit.max_coupons", "must be at least 1"))
    leads = config.remind_before or []
    for i, lead in enumerate(leads):
        if reason := durations.reason(lead):
            errors.append(FieldError(f"config.remind_before[{i}]", reason))
    parsed = [durations.parse(lead) for lead in leads]
    if len(set(parsed)) < len(parsed):
        errors.append(FieldError("config.remind_before", "must not repeat a lead time"))
    if leads and config.valid_for is None and config.expires_at is None:
        errors.append(
            FieldError(
                "config.remind_before",
                "needs valid_for or expires_at: coupons that never expire get no reminder",
            )
        )
    return errors


def valid_for(config: CouponConfig) -> timedelta | None:
    """The validated config's valid_for as a duration."""
    return None if config.valid_for is None else durations.of(config.valid_for)


def remind_before(config: CouponConfig) -> tuple[timedelta, ...]:
    """The validated config's reminder lead times, longest first."""
    return tuple(sorted((durations.of(t) for t in config.remind_before or ()), reverse=True))


def uses_per_code(config: CouponConfig) -> int:
    """How often one unassigned code may be redeemed (by anyone)."""
    return config.uses_per_code if config.uses_per_code is not None else 1


def rollback_restores_use(config: CouponConfig) -> bool:
    return config.rollback_restores_use is not False


def _auto_generate_errors(config: CouponConfig) -> list[FieldError]:
    auto = config.auto_generate
    if auto is None:
        return []
    errors: list[FieldError] = []
    prefix = "config.auto_generate"
    if auto.enabled and auto.trigger is None:
        errors.append(FieldError(f"{prefix}.trigger", "is required when enabled is true"))
    if auto.enabled and config.code_format != "random":
        errors.append(FieldError(f"{prefix}.enabled", "auto-generation needs code_format 'random'"))
    if auto.trigger is None:
        if auto.trigger_config is not None:
            errors.append(FieldError(f"{prefix}.trigger_config", "needs a trigger"))
        return errors
    needed = TRIGGER_FIELDS[auto.trigger]
    given: dict[str, Any] = auto.trigger_config.model_dump() if auto.trigger_config else {}
    for name in needed:
        value = given.get(name)
        if value is None:
            errors.append(
                FieldError(f"{prefix}.trigger_config.{name}", f"is required for {auto.trigger}")
            )
        elif name in THRESHOLDS and value < 1:
            errors.append(FieldError(f"{prefix}.trigger_config.{name}", "must be at least 1"))
    for name, value in given.items():
        if value is not None and name not in needed:
            errors.append(
                FieldError(f"{prefix}.trigger_config.{name}", f"is not used by {auto.trigger}")
            )
    return errors


def validated(config: CouponConfig) -> CouponConfig:
    """The config with defaults filled, or ValidationFailed naming every broken rule."""
    errors = config_errors(config)
    if errors:
        raise ValidationFailed(message="invalid coupon config", details=errors)
    return with_defaults(config)


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7396 JSON merge patch: objects merge, null removes, anything else replaces."""
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict):
            current = merged.get(key)
            merged[key] = merge_patch(current if isinstance(current, dict) else {}, value)
        else:
            merged[key] = value
    return merged
