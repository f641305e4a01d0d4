"""The draw-insert-retry loop of random codes, shared by issuance (events) and generation
(bulk): draw a code per coupon wanted, insert them all unordered, and draw again for those
refused on a code; a coupon refused on its issue key was stored before (by another attempt)
and is handed back as found, not drawn again.

The unique index on the tenant's normalized codes decides collisions: a draw only keeps the
codes of one round distinct. With the capacity check keeping spaces at most half full, more
than a few rounds means something is wrong: what is left after `MAX_DRAW_ROUNDS` is
reported, never retried for ever."""

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

from phoenix_coupons.domain.codes import CodeGenerator, CodeSpec
from phoenix_coupons.domain.models import Coupon

MAX_DRAW_ROUNDS = 8

T = TypeVar("T")  # what wants a coupon (the caller's)
S = TypeVar("S")  # what the caller's look-up finds stored under an issue key


class Placed(NamedTuple, Generic[T]):
    item: T
    coupon: Coupon


class Found(NamedTuple, Generic[T, S]):
    item: T
    stored: S


@dataclass
class Drawn(Generic[T, S]):
    """`placed`: inserted now; `found`: stored before under the same issue key; `left`: no
    free code found within the rounds."""

    placed: list[Placed[T]] = field(default_factory=list)
    found: list[Found[T, S]] = field(default_factory=list)
    left: list[T] = field(default_factory=list)


Insert = Callable[[Sequence[Coupon]], Awaitable[Sequence[int]]]
LookUp = Callable[[Sequence[str]], Awaitable[Mapping[str, S]]]


async def draw_and_insert(
    items: Sequence[T],
    codegen: CodeGenerator,
    spec: Callable[[T], CodeSpec],
    build: Callable[[T, str], Coupon],
    insert: Insert,
    stored: LookUp[S] | None = None,
    rounds: int = MAX_DRAW_ROUNDS,
) -> Drawn[T, S]:
    """`build`: the coupon of an item with a code; `insert`: stores coupons, returning the
    positions refused as duplicates; `stored`: finds coupons by issue key (None: an issue
    key is never stored before, every refusal is a code collision)."""
    out: Drawn[T, S] = Drawn()
    todo = list(items)
    for _ in range(rounds):
        if not todo:
            break
        codes = codegen.draw([spec(item) for item in todo])
        drawn = list(zip(todo, codes, strict=True))
        batch = [Placed(item, build(item, code)) for item, code in drawn if code is not None]
        undrawn = [item for item, code in drawn if code is None]
        refused = set(await insert([p.coupon for p in batch]))
        out.placed += [p for j, p in enumerate(batch) if j not in refused]
        retry = [batch[j] for j in sorted(refused)]
        if retry and stored is not None:
            found = await stored([p.coupon.issue_key for p in retry])
            out.found += [
                Found(p.item, found[p.coupon.issue_key])
                for p in retry
                if p.coupon.issue_key in found
            ]
            retry = [p for p in retry if p.coupon.issue_key not in found]
        todo = [p.item for p in retry] + undrawn
    out.left = todo
    return out
