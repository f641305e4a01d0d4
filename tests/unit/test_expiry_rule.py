"""The expiry rule (domain/expiry.py) with an injected clock: a coupon's first due time when
it is stored, and at each due time which step is sent and when the next falls due."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from phoenix_coupons.adapters.coupon_repo import DUE, from_doc, to_doc
from phoenix_coupons.domain import expiry
from phoenix_coupons.domain.coupon_factory import CouponFactory
from phoenix_coupons.domain.events import event_id
from phoenix_coupons.domain.expiry import DONE, Plan, Usage, plan
from phoenix_coupons.domain.history import Actor
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.domain.outbox import expiry_step
from schemas.coupons import CouponDefinition

pytestmark = pytest.mark.unit

T0 = datetime(2030, 1, 1, tzinfo=UTC)
DAY, HOUR = timedelta(days=1), timedelta(hours=1)
FRESH = Usage(redeemed=False, uses_left=True)


def definition(status: str = "active", **config: Any) -> CouponDefinition:
    cfg: dict[str, Any] = {
        "reward_item_id": "r-1",
        "code_format": "random",
        "code_length": 8,
        "usage_limit": {"limit_type": "per_user", "max_uses": 1},
    }
    cfg.update(config)
    return CouponDefinition.model_validate(
        {
            "id": "def-1",
            "tenant_id": "t-1",
            "name": "n",
            "description": None,
            "config": cfg,
            "status": status,
            "created_at": T0,
            "updated_at": T0,
        }
    )


def issued(defn: CouponDefinition, at: datetime = T0, source: Any = "event") -> Coupon:
    return CouponFactory.of(defn, source).coupon("evt:k", "ABCD2345", at, user_id="u-1")


WEEK_3D_1D = {"valid_for": "P7D", "remind_before": ["PT24H", "P3D"]}


def test_a_stored_coupon_is_first_due_at_its_longest_reminder() -> None:
    c = issued(definition(**WEEK_3D_1D))
    assert c.expires_at == T0 + 7 * DAY
    assert c.expiry_due == T0 + 4 * DAY  # issued_at + valid_for - the longest lead


def test_first_due_without_reminders_is_the_expiry_and_none_without_an_expiry() -> None:
    assert issued(definition(expires_at=T0 + 2 * DAY)).expiry_due == T0 + 2 * DAY
    assert issued(definition()).expiry_due is None


def test_a_reminder_due_before_issuance_is_not_one_of_the_coupon_steps() -> None:
    defn = definition(valid_for="P1D", remind_before=["P3D", "PT24H", "PT6H"])
    c = issued(defn)
    assert c.expiry_due == T0  # PT24H falls at issuance: due at once; P3D never
    names = [s.name for s in expiry.steps(c, defn, T0 + DAY)]
    assert names == ["PT24H", "PT6H", "expired"]


def test_a_definition_shared_code_has_no_steps() -> None:
    defn = definition(code_format="custom", custom_code="SHARED", expires_at=T0 + DAY)
    shared = CouponFactory.of(defn, "definition").coupon("shared:def-1", "SHARED", T0)
    assert shared.expiry_due is None
    assert plan(shared, defn, FRESH, (), T0 + 2 * DAY) == DONE


def test_each_reminder_then_the_expiry_in_turn() -> None:
    defn = definition(**WEEK_3D_1D)
    c = issued(defn)
    first = plan(c, defn, FRESH, (), T0 + 4 * DAY)
    assert [(s.kind, s.lead, s.expires_at) for s in first.send] == [
        ("expiring", "P3D", T0 + 7 * DAY)
    ]
    assert first.next_due == T0 + 6 * DAY
    second = plan(c, defn, FRESH, ["P3D"], T0 + 6 * DAY + HOUR)
    assert [s.name for s in second.send] == ["PT24H"]
    assert second.next_due == T0 + 7 * DAY
    last = plan(c, defn, FRESH, ["P3D", "PT24H"], T0 + 7 * DAY)
    assert [s.kind for s in last.send] == ["expired"]
    assert last.next_due is None
    assert plan(c, defn, FRESH, ["P3D", "PT24H", "expired"], T0 + 8 * DAY) == DONE


def test_nothing_before_its_time() -> None:
    defn = definition(**WEEK_3D_1D)
    assert plan(issued(defn), defn, FRESH, (), T0 + 4 * DAY - HOUR) == Plan((), T0 + 4 * DAY)


@pytest.mark.parametrize(
    "change",
    [
        {"status": "revoked"},
        {"kind": "shared"},
        {"user_id": None},
    ],
)
def test_revoked_and_non_user_coupons_get_nothing_more(change: dict[str, Any]) -> None:
    defn = definition(**WEEK_3D_1D)
    c = replace(issued(defn), **change)
    assert plan(c, defn, FRESH, (), T0 + 4 * DAY) == DONE


def test_archived_or_deleted_definitions_coupons_get_nothing_more() -> None:
    defn = definition(**WEEK_3D_1D)
    c = issued(defn)
    assert plan(c, definition("archived", **WEEK_3D_1D), FRESH, (), T0 + 4 * DAY) == DONE
    assert plan(c, None, FRESH, (), T0 + 4 * DAY) == DONE


def test_a_paused_definition_passes_a_step_over_and_keeps_the_later_ones() -> None:
    c = issued(definition(**WEEK_3D_1D))
    paused = definition("paused", **WEEK_3D_1D)
    assert plan(c, paused, FRESH, (), T0 + 4 * DAY) == Plan((), T0 + 6 * DAY)
    assert plan(c, paused, FRESH, (), T0 + 7 * DAY) == DONE  # no expired event either


def test_a_redeemed_coupon_gets_no_reminder_but_expires_with_uses_left() -> None:
    defn = definition(**WEEK_3D_1D)
    c = issued(defn)
    redeemed = Usage(redeemed=True, uses_left=True)  # e.g. per_user max_uses 2, one used
    assert plan(c, defn, redeemed, (), T0 + 4 * DAY) == Plan((), T0 + 6 * DAY)
    assert [s.kind for s in plan(c, defn, redeemed, ["P3D"], T0 + 7 * DAY).send] == ["expired"]


def test_a_fully_used_coupon_gets_nothing() -> None:
    defn = definition(**WEEK_3D_1D)
    c = issued(defn)
    used_up = Usage(redeemed=True, uses_left=False)
    assert plan(c, defn, used_up, (), T0 + 4 * DAY) == Plan((), T0 + 6 * DAY)
    assert plan(c, defn, used_up, (), T0 + 7 * DAY) == DONE
    # Not redeemed by this coupon, but its group's limit is reached (a global limit).
    assert plan(c, defn, Usage(False, False), (), T0 + 7 * DAY) == DONE


def test_an_expiry_moved_later_moves_the_steps() -> None:
    c = issued(definition(expires_at=T0 + 5 * DAY, remind_before=["P1D"]))
    assert c.expiry_due == T0 + 4 * DAY
    later = definition(expires_at=T0 + 10 * DAY, remind_before=["P1D"])
    assert plan(c, later, FRESH, (), T0 + 4 * DAY) == Plan((), T0 + 9 * DAY)
    sent = plan(c, later, FRESH, (), T0 + 9 * DAY).send
    assert [(s.name, s.expires_at) for s in sent] == [("P1D", T0 + 10 * DAY)]


def test_valid_for_caps_a_later_definition_expiry() -> None:
    c = issued(definition(valid_for="P7D", expires_at=T0 + 30 * DAY, remind_before=["P1D"]))
    extended = definition(valid_for="P7D", expires_at=T0 + 60 * DAY, remind_before=["P1D"])
    assert expiry.effective_expiry(c, extended) == T0 + 7 * DAY
    assert c.expiry_due == T0 + 6 * DAY


def test_an_expiry_moved_earlier_is_read_at_the_next_due_time() -> None:
    """Seen at the old due time: steps whose time passed meanwhile are superseded by the
    expiry (documented: the definition's coupons keep their due times)."""
    c = issued(definition(expires_at=T0 + 10 * DAY, remind_before=["P1D"]))
    earlier = definition(expires_at=T0 + 5 * DAY, remind_before=["P1D"])
    sent = plan(c, earlier, FRESH, (), T0 + 9 * DAY).send
    assert [(s.kind, s.expires_at) for s in sent] == [("expired", T0 + 5 * DAY)]


def test_a_late_scheduler_sends_only_the_last_due_step() -> None:
    defn = definition(**WEEK_3D_1D)
    c = issued(defn)
    assert [s.name for s in plan(c, defn, FRESH, (), T0 + 6 * DAY + HOUR).send] == ["PT24H"]
    assert [s.name for s in plan(c, defn, FRESH, (), T0 + 9 * DAY).send] == ["expired"]


def test_a_step_sent_is_never_sent_again() -> None:
    defn = definition(**WEEK_3D_1D)
    c = issued(defn)
    assert plan(c, defn, FRESH, ["P3D"], T0 + 4 * DAY) == Plan((), T0 + 6 * DAY)


def test_the_step_marks_name_the_attempt() -> None:
    mark = expiry.mark("PT24H", "abc123")
    assert expiry.step_of(mark) == "PT24H"


def test_the_outbox_entries_of_steps() -> None:
    defn = definition(**WEEK_3D_1D)
    c = issued(defn)
    at = T0 + 4 * DAY + timedelta(seconds=5)
    (step,) = plan(c, defn, FRESH, (), at).send
    entry = expiry_step(c, step, at, expiry.mark(step.name, "a1"))
    assert entry.id == event_id("coupon.expiring", f"{c.id}:P3D")
    assert entry.event.model_dump(include={"event_type", "remind_before", "expires_at"}) == {
        "event_type": "coupon.expiring",
        "remind_before": "P3D",
        "expires_at": T0 + 7 * DAY,
    }
    assert entry.subject.step_mark == "P3D:a1"
    assert entry.history is not None
    assert (entry.history.kind, entry.history.actor, entry.history.at) == (
        "expiring",
        Actor("scheduler"),
        at,
    )
    assert entry.history.details == {
        "remind_before": "P3D",
        "expires_at": "2030-01-08T00:00:00+00:00",
    }
    (last,) = plan(c, defn, FRESH, ["P3D", "PT24H"], T0 + 7 * DAY).send
    gone = expiry_step(c, last, T0 + 7 * DAY, "expired:a2")
    assert gone.id == event_id("coupon.expired", c.id)
    assert gone.event.event_type == "coupon.expired"
    assert gone.history is not None and gone.history.kind == "expired"


def test_the_due_time_is_stored_as_epoch_ms_and_only_when_set() -> None:
    defn = definition(**WEEK_3D_1D)
    c = issued(defn)
    doc = to_doc(c)
    assert doc[DUE] == int((T0 + 4 * DAY).timestamp() * 1000)
    assert from_doc(doc).expiry_due == T0 + 4 * DAY
    assert DUE not in to_doc(issued(definition()))


def test_which_definition_changes_plan_the_coupons_again() -> None:
    base = definition(expires_at=T0 + 10 * DAY, remind_before=["P1D", "PT1H"]).config
    same_leads = definition(expires_at=T0 + 10 * DAY, remind_before=["PT1H", "P1D"]).config
    assert not expiry.reschedules(base, same_leads)
    assert not expiry.reschedules(base, base.model_copy(update={"code_prefix": "NEW-"}))
    assert expiry.reschedules(base, base.model_copy(update={"expires_at": T0 + 5 * DAY}))
    assert expiry.reschedules(base, base.model_copy(update={"remind_before": ["P2D"]}))
    assert expiry.reschedules(definition().config, base)  # an expiry set
