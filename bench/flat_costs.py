"""Flat costs of the hot look-ups and list pages, on the embedded MongoDB:
p50 of a code look-up (the code stored last, and a miss), the capacity read, a definition's
codes (first page and a page by cursor deep in the list) and a wallet page, at two sizes of
the coupons collection. Each should stay within ~2x from the small size to the large one.

    .venv/bin/python -m phoenix_coupons.devservers --temp -- \
        .venv/bin/python -m bench.flat_costs [small] [large]

A script, not a test: timings on a shared machine make poor assertions."""

import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from phoenix_coupons.adapters.coupon_repo import MongoCouponRepo
from phoenix_coupons.adapters.mongo import Mongo
from phoenix_coupons.domain import issue_keys
from phoenix_coupons.domain.models import Coupon

Call = Callable[[], Awaitable[Any]]
T0 = datetime(2030, 1, 1, tzinfo=UTC)
SPACE = "A-Z0-9:10"
ROUNDS = 100


def coupon(n: int, definition: str) -> Coupon:
    key = f"bench:{n}"
    return Coupon(
        id=issue_keys.coupon_id(key),
        tenant_id="bench",
        definition_id=definition,
        reward_item_id="r",
        code=f"C{n:09d}",
        code_norm=f"C{n:09d}",
        kind="issued",
        source="bulk",
        issue_key=key,
        issued_at=T0 + timedelta(seconds=n),
        user_id=f"user-{n // 4}",  # four coupons each, at any size
        code_space=SPACE,
    )


def calls(repo: MongoCouponRepo, size: int, cursor: str | None) -> dict[str, Call]:
    last = f"C{size - 1:09d}"
    return {
        "by_code (stored last)": lambda: repo.by_code("bench", last),
        "by_code (miss)": lambda: repo.by_code("bench", "NOSUCHCODE"),
        "count_in_space": lambda: repo.count_in_space("bench", SPACE),
        "codes page 1": lambda: repo.definition_codes("bench", "d-0", None, 50, 0),
        "codes page by cursor": lambda: repo.definition_codes("bench", "d-0", None, 50, 0, cursor),
        "wallet page": lambda: repo.wallet("bench", "user-7", 50, 0),
    }


async def fill(mongo: Mongo, size: int) -> dict[str, Call]:
    repo = MongoCouponRepo(mongo)
    await mongo.ensure_indexes()
    batch = 1000
    for start in range(0, size, batch):
        # Ten definitions; the one listed ("d-0") holds a tenth of the coupons.
        await repo.insert_unordered(
            [coupon(n, f"d-{n % 10}") for n in range(start, min(size, start + batch))]
        )
    cursor = (await repo.definition_codes("bench", "d-0", None, 50, 0)).next_after
    return calls(repo, size, cursor)  # the cursor of page 2


async def timed(call: Call) -> float:
    start = time.perf_counter()
    await call()
    return (time.perf_counter() - start) * 1000


async def main(sizes: list[int]) -> None:
    """Both sizes filled first, then measured in turns: the machine's load falls on both."""
    uri = os.environ["MONGODB_URI"]
    stores = [Mongo(uri, f"flat_{uuid.uuid4().hex[:8]}", 3600) for _ in sizes]
    try:
        probes = [await fill(mongo, size) for mongo, size in zip(stores, sizes, strict=True)]
        print(f"{'p50 ms':24} {sizes[0]:>10} {sizes[-1]:>10} {'ratio':>7}")
        for name in probes[0]:
            times: list[list[float]] = [[] for _ in sizes]
            for _ in range(ROUNDS):
                for i, probe in enumerate(probes):
                    times[i].append(await timed(probe[name]))
            small, large = statistics.median(times[0]), statistics.median(times[-1])
            print(f"{name:24} {small:10.2f} {large:10.2f} {large / small:7.2f}")
    finally:
        for mongo in stores:
            await mongo.client.drop_database(mongo.db.name)
            await mongo.close()


if __name__ == "__main__":
    asyncio.run(main([int(a) for a in sys.argv[1:]] or [1000, 20000]))
