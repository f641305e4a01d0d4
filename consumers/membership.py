"""The worker's consumer group membership: static (KIP-345) only with an explicit
`PHOENIX_WORKER_ID`, dynamic otherwise; and how a static worker finds that another process
with its id took its membership (it is fenced, and stops).

A static member with a given `group.instance.id` is replaced by the next process joining with
the same id. Apache Kafka answers the replaced member's requests that carry the id
(JoinGroup, SyncGroup, Heartbeat v3+) with FENCED_INSTANCE_ID (82); aiokafka 0.14 has no
class for that code (aio-libs/aiokafka#1186: it surfaces as an untyped KafkaError) and sends
Heartbeat v1, which carries no instance id, so its replaced member mostly sees
UNKNOWN_MEMBER_ID and rejoins, replacing the other process in turn: the two would take the
membership from each other at every heartbeat, for ever (the embedded noida-db answers the
same way). So the worker looks, when its membership is lost, at who holds it now
(`Fencing`).

The aiokafka internals this needs (the coordinator's state, the code's class, leaving on
stop) are reached through phoenix_coupons/adapters/aiokafka_compat.py only."""

import os
import secrets
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from phoenix_coupons.adapters.aiokafka_compat import (
    FencedInstanceIdError,
    group_state,
    leave_group_on_stop,
)
from phoenix_coupons.domain.errors import PhoenixError
from phoenix_coupons.settings import Settings

__all__ = [
    "FencedInstanceIdError",
    "Fencing",
    "Membership",
    "WorkerFenced",
    "group_members",
    "is_fenced_instance",
    "joined",
    "leave_on_stop",
    "membership_lost",
]

log = structlog.get_logger(__name__)

CLIENT_PREFIX = "phoenix-coupons-"


class WorkerFenced(PhoenixError):
    """Another process joined the group with this worker's `PHOENIX_WORKER_ID`."""

    code = "worker_fenced"


def is_fenced_instance(exc: BaseException) -> bool:
    """The coordinator's FENCED_INSTANCE_ID, as aiokafka raises it: the error itself (offset
    commit) or wrapped in a KafkaError by its repr (JoinGroup, SyncGroup, Heartbeat)."""
    if getattr(exc, "errno", None) == FencedInstanceIdError.errno:
        return True
    text = str(exc)
    return FencedInstanceIdError.__name__ in text or FencedInstanceIdError.message in text


@dataclass(frozen=True)
class Membership:
    """`instance_id`: the static membership's id (None: dynamic). `client_id`: unique per
    process, and names the worker id, so that a group's member list tells the processes that
    share one apart."""

    worker_id: str | None
    client_id: str

    @property
    def instance_id(self) -> str | None:
        return self.worker_id

    @property
    def static(self) -> bool:
        return self.worker_id is not None

    @classmethod
    def of(cls, settings: Settings) -> "Membership":
        name = settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"
        return cls(settings.worker_id, f"{CLIENT_PREFIX}{name}.{secrets.token_hex(4)}")

    def held_elsewhere(self, members: Iterable[Mapping[str, Any]]) -> str | None:
        """The client id of another process of this worker id among the group's members."""
        own = self.client_id.rsplit(".", 1)[0]
        for member in members:
            client = str(member.get("client_id", ""))
            if client != self.client_id and client.rsplit(".", 1)[0] == own:
                return client
        return None

    def fenced_message(self, holder: str | None) -> str:
        """`holder`: the client id of the process that took the membership, if known."""
        who = f"another worker process ({holder})" if holder else "another worker process"
        return (
            f"{who} joined the consumer group with this worker's "
            f"PHOENIX_WORKER_ID={self.worker_id!r} and took its partitions: give each replica "
            "its own PHOENIX_WORKER_ID, or leave it unset (dynamic membership)"
        )


async def group_members(bootstrap: str, group: str) -> list[dict[str, Any]]:
    """The group's members as its coordinator lists them (DescribeGroups)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        responses = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    members: list[dict[str, Any]] = []
    for response in responses:
        for described in response.to_object()["groups"]:
            members += described["members"]
    return members


def membership_lost(consumer: AIOKafkaConsumer) -> bool:
    """aiokafka forgot its member id: the coordinator no longer knew it (UNKNOWN_MEMBER_ID:
    session expired, or replaced by a static member of the same id), or a commit met
    ILLEGAL_GENERATION; it rejoins after the revocation."""
    state = group_state(consumer)
    return state is not None and not state.member_id


def joined(consumer: AIOKafkaConsumer) -> bool:
    """A member of the group whose coordinator is reachable: aiokafka forgets the coordinator
    when a heartbeat or commit cannot reach it."""
    state = group_state(consumer)
    return (
        state is not None
        and bool(state.member_id)
        and state.generation > 0
        and state.coordinator_id is not None
    )


def leave_on_stop(consumer: AIOKafkaConsumer) -> None:
    """A stopping static worker leaves as a dynamic one does, so that its partitions move at
    once rather than after its session expired (the next owner starts at the offsets
    committed on revocation). Also used by a fenced worker, so that its last rejoin does not
    take the membership from the process that fenced it."""
    leave_group_on_stop(consumer)


class Fencing:
    """Whether another process took this static worker's membership. Fencing is final: the
    worker stops (`on_fenced`) and `run` raises `fenced`."""

    def __init__(
        self,
        membership: Membership,
        bootstrap: str,
        group: str,
        on_fenced: Callable[[], None],
    ) -> None:
        self.membership = membership
        self._bootstrap = bootstrap
        self._group = group
        self._on_fenced = on_fenced
        self.fenced: WorkerFenced | None = None
        self.was_member = False  # joined once: a member id forgotten later is a loss

    def fence(self, holder: str | None = None, cause: BaseException | None = None) -> None:
        """`holder`: the client id of the process that took the membership, if known."""
        if self.fenced is None:
            message = self.membership.fenced_message(holder)
            self.fenced = WorkerFenced(message)
            log.error(
                "worker_fenced",
                error=message,
                cause=repr(cause) if cause else None,
                worker_id=self.membership.worker_id,
                client_id=self.membership.client_id,
            )
        self._on_fenced()

    async def check_lost(self, consumer: AIOKafkaConsumer) -> None:
        """On a revocation: a static membership lost to another process of this worker id
        fences this one. aiokafka rejoins next, as a dynamic member then, which takes
        nothing from the process holding the id; the worker then stops and leaves."""
        if not self.membership.static or self.fenced is not None:
            return
        if not (self.was_member and membership_lost(consumer)):
            return
        holder = await self._holder_elsewhere()
        if holder is not None:
            self.fence(holder)
            leave_on_stop(consumer)

    async def _holder_elsewhere(self) -> str | None:
        """Another process of this worker id among the group's members, asked when the
        membership was lost (it is nobody's while this worker rejoins, unless taken)."""
        try:
            members = await group_members(self._bootstrap, self._group)
        except Exception as exc:  # can't tell: rejoin, as before
            log.warning("group_members_unknown", error=repr(exc))
            return None
        return self.membership.held_elsewhere(members)
