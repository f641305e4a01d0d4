"""The MongoDB commands one request's work sends, counted through the services in this
process (what the API process does for the request, without HTTP): the key check, then
validate or redeem of a shared code, and the outbox relay's work for a redeem's event.
A redeem's own commands (its request path) apart from what the process's settler sends after
the answer: for one redeem at a time, and for 32 at once (the settler's batches)."""

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from pymongo import monitoring

from phoenix_coupons.bootstrap import Container
from schemas.redemptions import RedeemRequest

CALLS = 20
TOGETHER = 32  # redeems at once (the scenario's concurrency)


@dataclass
class _Listener(monitoring.CommandListener):
    """Counts commands while `on`: (command, collection) -> n. Registered once for the
    process (pymongo has no unregister), so idle unless a count is under way."""

    on: bool = False
    seen: Counter[str] = field(default_factory=Counter)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.on:
            target = event.command.get(event.command_name)
            where = target if isinstance(target, str) else ""
            self.seen[f"{event.command_name} {where}".strip()] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


LISTENER = _Listener()
monitoring.register(LISTENER)  # before any client of the counting container is made


@dataclass(frozen=True)
class Counts:
    """Commands per call, by (command, collection)."""

    auth: dict[str, float]
    validate: dict[str, float]
    redeem: dict[str, float]
    settle: dict[str, float]  # after one redeem's answer
    together: dict[str, float]  # per redeem, 32 at once, their settles included

    def lines(self) -> list[str]:
        out = ["  MongoDB commands per call (through the services, this process):"]
        for name, counts in (("key check", self.auth), ("validate", self.validate)):
            out.append(f"    {name:<10} {_total(counts):4.1f}  {_listed(counts)}")
        out.append(f"    {'redeem':<10} {_total(self.redeem):4.1f}  {_listed(self.redeem)}")
        for name, counts in (
            ("settle", self.settle),
            (f"{TOGETHER} at once", self.together),
        ):
            out.append(f"    {name:<10} {_total(counts):4.1f}  {_listed(counts)}")
        out.append(
            "    (settle: what the settler sends after one redeem's answer; "
            f"{TOGETHER} at once: per redeem, their settles included)"
        )
        return out


def _total(counts: dict[str, float]) -> float:
    return sum(counts.values())


def _listed(counts: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


async def count_round_trips(container: Container, tenant: str, code: str, key: str) -> Counts:
    """`container` made after this module was imported (its client is listened to); `code`
    a shared code of `tenant` with room for CALLS more redeems (fresh user ids)."""

    async def per_call(make: object) -> dict[str, float]:
        LISTENER.seen.clear()
        LISTENER.on = True
        try:
            for i in range(CALLS):
                await make(i)  # type: ignore[operator]
        finally:
            LISTENER.on = False
        return {k: v / CALLS for k, v in LISTENER.seen.items()}

    caller = (await container.api_keys.from_api_key(key)).key_id

    async def auth(_: int) -> None:
        await container.api_keys.from_api_key(key)

    async def validate(i: int) -> None:
        await container.redemptions.validate(
            tenant, RedeemRequest(code=code, user_id=f"rt-v-{i}"), caller
        )

    async def redeem(i: int) -> None:
        await container.redemptions.redeem(
            tenant, RedeemRequest(code=code, user_id=f"rt-r-{i}"), caller
        )
        LISTENER.on = False  # what the settler sends is counted apart
        await container.settler.flush()
        LISTENER.on = True

    async def settle(i: int) -> None:
        LISTENER.on = False
        await container.redemptions.redeem(
            tenant, RedeemRequest(code=code, user_id=f"rt-s-{i}"), caller
        )
        LISTENER.on = True
        await container.settler.flush()

    async def together() -> dict[str, float]:
        LISTENER.seen.clear()
        LISTENER.on = True
        try:
            await asyncio.gather(
                *(
                    container.redemptions.redeem(
                        tenant, RedeemRequest(code=code, user_id=f"rt-t-{n}"), caller
                    )
                    for n in range(TOGETHER)
                )
            )
            await container.settler.flush()
        finally:
            LISTENER.on = False
        return {k: v / TOGETHER for k, v in LISTENER.seen.items()}

    return Counts(
        await per_call(auth),
        await per_call(validate),
        await per_call(redeem),
        await per_call(settle),
        await together(),
    )
