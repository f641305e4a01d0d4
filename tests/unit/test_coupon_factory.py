"""The one construction of a coupon (domain/coupon_factory.py) for each source, and what its
stored document adds (adapters/coupon_repo.py): the outbox state, set by source in one
place, and the inbound record of an event coupon, read back for the redelivery rules."""

from datetime import UTC, datetime, timedelta

import pytest

from phoenix_coupons.adapters.coupon_repo import stored_from_doc, to_doc
from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.codes import CodeSpec
from phoenix_coupons.domain.coupon_factory import CouponFactory
from phoenix_coupons.domain.delivery import RecordId
from phoenix_coupons.domain.models import Coupon, CouponSource
from schemas.coupons import CouponDefinition

AT = datetime(2030, 6, 1, tzinfo=UTC)
WINDOW = {"starts_at": AT - timedelta(days=1), "expires_at": AT + timedelta(days=30)}


def definition(**config: object) -> CouponDefinition:
    base: dict[str, object] = {
        "reward_item_id": "reward-1",
        "code_format": "random",
        "code_prefix": "ac-",
        "code_length": 10,
        "usage_limit": {"limit_type": "unlimited"},
        **WINDOW,
    }
    return CouponDefinition.model_validate(
        {
            "id": "def-1",
            "tenant_id": "t-1",
            "name": "n",
            "description": None,
            "config": {**base, **config},
            "status": "active",
            "created_at": AT,
            "updated_at": AT,
        }
    )


def new_coupon(
    defn: CouponDefinition,
    *,
    key: str,
    code: str,
    source: CouponSource,
    issued_at: datetime,
    user_id: str | None = None,
    trigger_event_id: str | None = None,
) -> Coupon:
    return CouponFactory.of(defn, source).coupon(key, code, issued_at, user_id, trigger_event_id)


def test_an_event_coupon_is_the_user_s_with_the_definition_s_window_and_code_space() -> None:
    coupon = new_coupon(
        definition(),
        key="evt:k",
        code="ac-ABCDEFGHJK",
        source="event",
        issued_at=AT,
        user_id="u-1",
        trigger_event_id="e-1",
    )
    assert coupon == Coupon(
        id=issue_keys.coupon_id("evt:k"),
        tenant_id="t-1",
        definition_id="def-1",
        reward_item_id="reward-1",
        code="ac-ABCDEFGHJK",
        code_norm="AC-ABCDEFGHJK",
        kind="issued",
        source="event",
        issue_key="evt:k",
        issued_at=AT,
        user_id="u-1",
        code_space="AC-:10",
        trigger_event_id="e-1",
        expiry_due=WINDOW["expires_at"],  # its one expiry step: no reminders
        **WINDOW,  # type: ignore[arg-type]
    )


def test_the_default_code_length_names_the_code_space() -> None:
    coupon = new_coupon(
        definition(code_length=None), key="k", code="ac-X", source="bulk", issued_at=AT
    )
    assert coupon.code_space == "AC-:8"


def test_a_pattern_and_a_charset_name_their_own_code_space() -> None:
    patterned = definition(code_prefix=None, code_length=None, code_pattern="ac-##??")
    made = CouponFactory.of(patterned, "event")
    assert made.spec == CodeSpec("ac-##??", False, "unambiguous")
    assert made.code_space == "AC-{udigit:2}{uletter:2}"
    numeric = CouponFactory.of(definition(charset="numeric"), "bulk")
    assert numeric.spec == CodeSpec.random("ac-", 10, False, "numeric")
    coupon = numeric.coupon("k", "AC-0123456789", AT, "u")
    assert coupon.code_space == "AC-{digit:10}"


def test_a_custom_code_has_no_code_space() -> None:
    defn = definition(code_format="custom", code_prefix=None, code_length=None)
    coupon = new_coupon(defn, key="k", code="Gift-1", source="bulk", issued_at=AT, user_id="u")
    assert (coupon.code_space, coupon.code_norm, coupon.kind) == (None, "GIFT-1", "issued")
    assert coupon.expires_at == WINDOW["expires_at"]


def test_the_shared_code_belongs_to_no_user_and_carries_no_window() -> None:
    defn = definition(code_format="custom", code_prefix=None, code_length=None)
    shared = new_coupon(
        defn, key=issue_keys.shared("def-1"), code="NEWYEAR", source="definition", issued_at=AT
    )
    assert (shared.kind, shared.user_id, shared.starts_at, shared.expires_at) == (
        "shared",
        None,
        None,
        None,
    )


@pytest.mark.parametrize("source", ["bulk", "event", "definition"])
def test_a_coupon_document_holds_no_outbox_state(source: str) -> None:
    """Bulk coupons' events wait in the outbox collection (services/generation.py; test
    test_generation.py::test_bulk_coupons_are_announced_through_the_outbox), event coupons
    are announced by the worker, shared codes never: no coupon carries a publish flag."""
    coupon = new_coupon(definition(), key="k", code="ac-A", source=source, issued_at=AT)  # type: ignore[arg-type]
    doc = to_doc(coupon)
    assert not {k for k in doc if k.startswith("publish")}


def test_an_event_coupon_s_record_is_kept_in_its_document_and_read_back() -> None:
    coupon = new_coupon(definition(), key="k", code="ac-A", source="event", issued_at=AT)
    record = RecordId("phoenix.achievements", 3, 41)
    doc = to_doc(coupon, record)
    assert doc["trigger_record"] == "phoenix.achievements:3:41"
    assert stored_from_doc(doc).record == record
    assert stored_from_doc(doc).coupon == coupon
    assert stored_from_doc(to_doc(coupon)).record is None


def test_an_unassigned_code_has_no_owner_and_no_expiry_steps() -> None:
    made = CouponFactory.of(definition(remind_before=["P3D"]), "bulk")
    coupon = made.coupon("job:j:1", "AC-ABCDEFGHJK", AT)
    assert (coupon.kind, coupon.user_id, coupon.expires_at) == (
        "unassigned",
        None,
        WINDOW["expires_at"],
    )
    assert coupon.expiry_due is None, "nobody to remind or tell: the scheduler skips it"
    owned = made.coupon("job:j:2", "AC-ABCDEFGHJ2", AT, "u-1")
    assert owned.kind == "issued" and owned.expiry_due == WINDOW["expires_at"] - timedelta(days=3)
