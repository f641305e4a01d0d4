"""Background tasks stop even when a cancellation is swallowed (as PyMongo's async calls can
on Python 3.11), and a task that never stops does not hang the caller."""

import asyncio

from phoenix_coupons.adapters.background import cancel_and_wait


async def _swallows(times: int, ticks: list[int]) -> None:
    swallowed = 0
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed += 1
            ticks.append(swallowed)
            if swallowed > times:
                raise


async def test_a_task_that_swallows_cancellations_is_cancelled_again_until_it_ends() -> None:
    ticks: list[int] = []
    task = asyncio.create_task(_swallows(2, ticks))
    await asyncio.sleep(0)
    assert await cancel_and_wait(task, timeout_s=5)
    assert task.done() and ticks == [1, 2, 3]


async def test_a_task_that_never_ends_is_given_up_at_the_deadline() -> None:
    stop = asyncio.Event()

    async def stubborn() -> None:
        while not stop.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert not await cancel_and_wait(task, timeout_s=0.3)
    assert not task.done()
    stop.set()
    task.cancel()
    await asyncio.wait({task}, timeout=1)


async def test_a_finished_task_is_fine() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.wait({task})
    assert await cancel_and_wait(task, timeout_s=1)
