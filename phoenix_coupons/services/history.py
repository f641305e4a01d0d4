"""A code's timeline: the steps stored in `code_history` (one `_id` range per code, in time
order) merged with the steps read from the coupon itself (its issuance, its revocation), one
page at a time.

An `after` cursor pages at the same cost at any depth. An `offset` is placed in the merged
order: each of the coupon's own (at most two) steps is preceded by as many stored steps as
lie before it, counted up to the page's end, so the stored page starts at `offset` less the
own steps that come before it."""

from dataclasses import dataclass

from phoenix_coupons.domain.history import (
    CLOCK_SKEW,
    HistoryEntry,
    code_key,
    coupon_steps,
    range_end,
    time_key,
)
from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.services.ports import CodeHistory
from schemas.history import CodeHistory as CodeHistoryBody
from schemas.history import HistoryActor, HistoryEvent


@dataclass(frozen=True, slots=True)
class TimelinePage:
    steps: list[HistoryEntry]
    next_after: str | None  # the last step's id past its code's key, when more follow


async def timeline_page(
    store: CodeHistory, coupon: Coupon, limit: int, offset: int, after: str | None
) -> TimelinePage:
    key = code_key(coupon.tenant_id, coupon.code_norm)
    since = time_key(key, coupon.issued_at - CLOCK_SKEW)
    end = range_end(key)
    own = coupon_steps(coupon)
    if after is not None:
        above = max(since, f"{key}|{after}")
        mine = [s for s in own if s.id > above]
        stored = await store.between(coupon.code_norm, above, end, 0, limit + 1)
    else:
        mine, before = [], 0
        for i, step in enumerate(own):
            # Its place in the merged order, known exactly while it is within this page.
            place = i
            if offset:
                place += await store.count_between(coupon.code_norm, since, step.id, offset + limit)
            if place < offset:
                before += 1
            else:
                mine.append(step)
        stored = await store.between(coupon.code_norm, since, end, offset - before, limit + 1)
    merged = sorted({s.id: s for s in [*mine, *stored]}.values(), key=lambda s: s.id)
    page = merged[:limit]
    more = len(merged) > limit and bool(page)
    return TimelinePage(page, page[-1].id[len(key) + 1 :] if more else None)


def history_body(coupon: Coupon, page: TimelinePage) -> CodeHistoryBody:
    return CodeHistoryBody(
        code=coupon.code,
        coupon_id=coupon.id,
        events=[
            HistoryEvent(
                at=s.at,
                type=s.kind,
                actor=None if s.actor is None else HistoryActor(type=s.actor.kind, id=s.actor.id),
                details=dict(s.details),
            )
            for s in page.steps
        ],
        next_after=page.next_after,
    )
