"""A readied bundle's records (adapters/outbox.py): each expands to exactly the ready entry
its coupon would have on its own (but the time it was created: the bundle's), the bundle
holds the coupons it names in its order, and what is left after a passing failure keeps
only those coupons' records."""

import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from phoenix_coupons.adapters import outbox
from phoenix_coupons.adapters.outbox import (
    READY,
    RECORDS,
    bundle_doc,
    bundle_records,
    bundle_remaining,
    entry_doc,
    recorded_units,
)
from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.domain.outbox import IssuedBundle, issued

AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def coupons(n: int, user: bool = True) -> list[Coupon]:
    definition_id = str(uuid.uuid4())
    out = []
    for i in range(n):
        key = issue_keys.bulk(definition_id, "req", i, "nonce")
        out.append(
            Coupon(
                id=issue_keys.coupon_id(key),
                tenant_id="t1",
                definition_id=definition_id,
                reward_item_id="r1",
                code=f"CODE{i:04d}",
                code_norm=f"CODE{i:04d}",
                kind="issued" if user else "unassigned",
                source="bulk",
                issue_key=key,
                issued_at=AT,
                user_id=f"user-{i}" if user else None,
                metadata={"n": i},
            )
        )
    return out


def bundle(of: list[Coupon]) -> IssuedBundle:
    return IssuedBundle("b1", "t1", tuple(c.id for c in of), AT)


@pytest.mark.parametrize("user", [True, False], ids=["issued", "unassigned"])
def test_each_record_expands_to_the_coupons_own_ready_entry(user: bool) -> None:
    made = coupons(3, user)
    doc = bundle_doc(bundle(made).stored(made), READY)
    assert recorded_units(doc) == [entry_doc(issued(c), READY) for c in made]


def test_a_bundle_holds_what_it_names_in_its_order_or_nothing() -> None:
    made = coupons(4)
    stored = bundle(made).stored([made[2], made[0]])
    assert stored.coupon_ids == (made[0].id, made[2].id)
    assert stored.coupons == (made[0], made[2])
    with pytest.raises(ValueError, match="in its order"):
        replace(stored, coupons=(made[2], made[0]))
    assert RECORDS not in bundle_doc(bundle(made)), "prepared: no records yet"


def test_what_is_left_keeps_only_those_coupons_records() -> None:
    made = coupons(4)
    doc = bundle_doc(bundle(made).stored(made), READY)
    left = bundle_remaining(doc, [made[1].id, made[3].id])
    assert left["subject"]["bundle"] == [made[1].id, made[3].id] and left["size"] == 2
    assert [r[1] for r in left[RECORDS]] == [made[1].id, made[3].id]
    plain = bundle_remaining(bundle_doc(bundle(made)), [made[1].id])
    assert RECORDS not in plain, "a bundle without records stays without"


def test_records_past_the_bound_are_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """The relay then reads the coupons, as for a swept bundle."""
    made = coupons(3)
    one = len(entry_doc(issued(made[0]), READY)["value"])
    monkeypatch.setattr(outbox, "RECORDS_MAX_CHARS", 2 * one + 1)
    assert bundle_records(made[:2]) is not None
    assert bundle_records(made) is None
    assert bundle_records([]) is None
