"""Validity relative to issuance (`valid_for`): the durations it reads, the config rules that
bound it and `remind_before`, the window each coupon gets, and redemption reading it."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from phoenix_coupons.adapters.coupon_repo import from_doc, to_doc
from phoenix_coupons.domain import durations
from phoenix_coupons.domain.config_rules import config_errors, remind_before, valid_for
from phoenix_coupons.domain.coupon_factory import CouponFactory
from phoenix_coupons.domain.redemption import refusal
from schemas.coupons import CouponConfig, CouponDefinition
from tests.unit.test_config_rules import random_config

T0 = datetime(2030, 1, 1, tzinfo=UTC)
pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("P7D", timedelta(days=7)),
        ("PT36H", timedelta(hours=36)),
        ("P1W", timedelta(weeks=1)),
        ("P1DT12H30M", timedelta(days=1, hours=12, minutes=30)),
        ("PT90S", timedelta(seconds=90)),
        ("PT0.5S", timedelta(milliseconds=500)),
    ],
)
def test_durations_read(text: str, value: timedelta) -> None:
    assert durations.parse(text) == value
    assert durations.reason(text) is None


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("P", "ISO 8601"),
        ("PT", "ISO 8601"),
        ("P1DT", "ISO 8601"),
        ("7D", "ISO 8601"),
        ("p7d", "ISO 8601"),
        ("P-1D", "ISO 8601"),
        ("P1M", "days instead"),
        ("P1Y", "days instead"),
        ("P0D", "greater than zero"),
        ("PT0S", "greater than zero"),
        ("P3651D", "at most 10 years"),
        ("P99999999999999D", "at most 10 years"),
        ("P" + "1" * 60 + "D", "at most 40 characters"),
    ],
)
def test_bad_durations_say_why(text: str, words: str) -> None:
    reason = durations.reason(text)
    assert reason is not None and words in reason


def config(**overrides: Any) -> CouponConfig:
    return random_config(**overrides)


def errors(cfg: CouponConfig) -> dict[str, str]:
    return {e.field: e.reason for e in config_errors(cfg)}


def test_valid_for_and_reminders_accepted() -> None:
    cfg = config(valid_for="P7D", remind_before=["PT24H", "P3D"])
    assert errors(cfg) == {}
    assert valid_for(cfg) == timedelta(days=7)
    assert remind_before(cfg) == (timedelta(days=3), timedelta(hours=24))  # longest first


def test_valid_for_refused_on_custom_definitions() -> None:
    cfg = config(code_format="custom", custom_code="WELCOME", valid_for="P7D")
    assert "no issuance" in errors(cfg)["config.valid_for"]


def test_bad_valid_for_and_reminders_are_named() -> None:
    found = errors(config(valid_for="P0D", remind_before=["P1D", "soon", "PT24H"]))
    assert found["config.valid_for"] == "must be greater than zero"
    assert "ISO 8601" in found["config.remind_before[1]"]
    assert found["config.remind_before"] == "must not repeat a lead time"  # P1D == PT24H


def test_an_issuance_limit_is_at_least_one() -> None:
    assert errors(config(issuance_limit={"max_coupons": 0})) == {
        "config.issuance_limit.max_coupons": "must be at least 1"
    }
    assert errors(config(issuance_limit={"max_coupons": 1})) == {}


def test_reminders_need_an_expiry() -> None:
    assert (
        "needs valid_for or expires_at"
        in errors(config(remind_before=["P1D"]))["config.remind_before"]
    )
    assert errors(config(remind_before=["P1D"], expires_at=T0)) == {}


def test_at_most_three_reminders() -> None:
    with pytest.raises(ValueError, match="at most 3"):
        config(valid_for="P30D", remind_before=["P1D", "P2D", "P3D", "P4D"])


def definition(**overrides: Any) -> CouponDefinition:
    return CouponDefinition(
        id="def-1",
        tenant_id="t-1",
        name="n",
        description=None,
        config=config(**overrides),
        status="active",
        created_at=T0,
        updated_at=T0,
    )


def test_window_from_issuance() -> None:
    make = CouponFactory.of(definition(valid_for="P7D"), "event")
    coupon = make.coupon("k", "CODE1234", T0, user_id="u-1")
    assert (coupon.starts_at, coupon.expires_at) == (T0, T0 + timedelta(days=7))
    assert coupon.valid_until == T0 + timedelta(days=7)


def test_window_capped_by_the_definition() -> None:
    defn = definition(
        valid_for="P7D", starts_at=T0 + timedelta(days=1), expires_at=T0 + timedelta(days=3)
    )
    coupon = CouponFactory.of(defn, "bulk").coupon("k", "CODE1234", T0, user_id="u-1")
    assert coupon.starts_at == T0 + timedelta(days=1)  # the later of issuance and starts_at
    assert coupon.expires_at == T0 + timedelta(days=3)  # capped by the definition's expiry
    assert coupon.valid_until == T0 + timedelta(days=7)


def test_without_valid_for_the_definition_window() -> None:
    defn = definition(starts_at=T0, expires_at=T0 + timedelta(days=3))
    coupon = CouponFactory.of(defn, "event").coupon("k", "CODE1234", T0, user_id="u-1")
    assert (coupon.starts_at, coupon.expires_at, coupon.valid_until) == (
        T0,
        T0 + timedelta(days=3),
        None,
    )


def test_redemption_reads_the_coupons_own_window() -> None:
    defn = definition(valid_for="PT36H")
    coupon = CouponFactory.of(defn, "event").coupon("k", "CODE1234", T0, user_id="u-1")
    assert refusal(coupon, defn, "u-1", T0 + timedelta(hours=35)) is None
    assert refusal(coupon, defn, "u-1", T0 + timedelta(hours=36)) == "expired"
    # A later change of the definition does not move an issued coupon's own expiry.
    longer = definition(valid_for="P30D")
    assert refusal(coupon, longer, "u-1", T0 + timedelta(hours=40)) == "expired"


def test_the_window_is_stored() -> None:
    coupon = CouponFactory.of(definition(valid_for="P7D"), "event").coupon(
        "k", "CODE1234", T0, user_id="u-1"
    )
    assert from_doc(to_doc(coupon)) == coupon
