"""coupon.issued events built from stored coupons: deterministic and faithful."""

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest

from phoenix_coupons.adapters.kafka import event_record
from phoenix_coupons.domain.events import coupon_issued, definition_exhausted, event_id
from phoenix_coupons.domain.models import Coupon

ISSUED_AT = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def make_coupon(**overrides: object) -> Coupon:
    values: dict[str, object] = {
        "id": "0b9a7d5e-1111-4c2b-9a3e-5f6a7b8c9d0e",
        "tenant_id": "tenant-1",
        "definition_id": "def-1",
        "reward_item_id": "3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b",
        "code": "STREAK7-ABCD23",
        "code_norm": "STREAK7-ABCD23",
        "kind": "issued",
        "source": "event",
        "issue_key": "def-1:user-1:daily",
        "issued_at": ISSUED_AT,
        "user_id": "user-1",
        "starts_at": datetime(2030, 1, 1, tzinfo=UTC),
        "expires_at": datetime(2030, 2, 1, tzinfo=UTC),
        "trigger_event_id": "evt-42",
    }
    values.update(overrides)
    return Coupon(**values)  # type: ignore[arg-type]


def test_fields_are_copied_from_the_coupon() -> None:
    coupon = make_coupon()
    event = coupon_issued(coupon)
    assert event.event_type == "coupon.issued"
    assert event.model_dump() == {
        "event_id": event_id("coupon.issued", coupon.id),
        "event_type": "coupon.issued",
        "occurred_at": ISSUED_AT,
        "tenant_id": "tenant-1",
        "user_id": "user-1",
        "kind": "issued",
        "coupon_id": coupon.id,
        "code": "STREAK7-ABCD23",
        "definition_id": "def-1",
        "reward_item_id": "3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b",
        "source": "event",
        "trigger_event_id": "evt-42",
        "starts_at": datetime(2030, 1, 1, tzinfo=UTC),
        "expires_at": datetime(2030, 2, 1, tzinfo=UTC),
        "metadata": None,
    }


def test_bulk_coupon_without_window_or_trigger() -> None:
    coupon = make_coupon(source="bulk", trigger_event_id=None, starts_at=None, expires_at=None)
    event = coupon_issued(coupon)
    assert event.source == "bulk"
    assert event.trigger_event_id is None
    assert event.starts_at is None
    assert event.expires_at is None


def test_event_id_is_a_stable_uuid_of_the_coupon() -> None:
    coupon = make_coupon()
    first = coupon_issued(coupon).event_id
    # A retry rebuilds the event from the stored coupon, possibly with other fields touched.
    again = coupon_issued(dataclasses.replace(coupon, status="revoked", code="OTHER"))
    assert again.event_id == first
    assert uuid.UUID(first).version == 5
    assert event_id("coupon.issued", coupon.id) == first


def test_different_coupons_get_different_event_ids() -> None:
    ids = {coupon_issued(make_coupon(id=str(uuid.uuid4()))).event_id for _ in range(50)}
    assert len(ids) == 50


def test_event_id_depends_on_the_kind() -> None:
    assert event_id("coupon.issued", "c1") != event_id("coupon.redeemed", "c1")
    assert event_id("coupon.issued", "c1") == event_id("coupon.issued", "c1")


@pytest.mark.parametrize(
    "overrides",
    [
        {"user_id": None, "kind": "shared", "source": "definition"},
        {"source": "definition", "kind": "shared"},
    ],
)
def test_shared_coupon_is_not_announced(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="shared"):
        coupon_issued(make_coupon(**overrides))


@pytest.mark.parametrize(
    "overrides", [{"user_id": None}, {"kind": "unassigned"}], ids=["no-user", "owned"]
)
def test_a_coupon_whose_kind_and_owner_disagree_is_not_announced(
    overrides: dict[str, object],
) -> None:
    with pytest.raises(ValueError, match="user_id"):
        coupon_issued(make_coupon(**overrides))


def test_an_unassigned_code_is_announced_without_a_user_and_keyed_by_its_coupon() -> None:
    coupon = make_coupon(user_id=None, kind="unassigned", source="bulk", trigger_event_id=None)
    event = coupon_issued(coupon)
    assert (event.user_id, event.kind, event.coupon_id) == (None, "unassigned", coupon.id)
    record = event_record(event, "phoenix.coupons.issued")
    assert record.key == coupon.id.encode(), "no user: the coupon id spreads a job's codes"
    assert coupon_issued(make_coupon()).kind == "issued"
    assert event_record(coupon_issued(make_coupon()), "t").key == b"user-1"


def test_a_bulk_coupons_metadata_is_carried() -> None:
    meta = {"campaign": "spring", "nested": {"batch": 3}}
    event = coupon_issued(make_coupon(source="bulk", trigger_event_id=None, metadata=meta))
    assert event.metadata == meta


def test_definition_exhausted_is_one_event_per_definition_and_limit() -> None:
    first = definition_exhausted("tenant-1", "def-1", 50, ISSUED_AT)
    later = definition_exhausted("tenant-1", "def-1", 50, datetime(2031, 1, 1, tzinfo=UTC))
    raised = definition_exhausted("tenant-1", "def-1", 80, ISSUED_AT)
    assert first.event_id == later.event_id == event_id("coupon.definition_exhausted", "def-1:50")
    assert raised.event_id != first.event_id
    assert first.model_dump() == {
        "event_id": first.event_id,
        "event_type": "coupon.definition_exhausted",
        "occurred_at": ISSUED_AT,
        "tenant_id": "tenant-1",
        "definition_id": "def-1",
        "max_coupons": 50,
    }
    record = event_record(first, "phoenix.coupons.issued")
    assert record.key == b"def-1", "keyed by definition: it has no user"
