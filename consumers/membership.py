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
same way). So the worker looks, when its membership is lost, at who holds it now.

The aiokafka internals this needs (member id, coordinator, instance id) are read here only."""

import os
import secrets
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import BrokerResponseError, kafka_errors

from phoenix_coupons.domain.errors import PhoenixError
from phoenix_coupons.settings import Settings

CLIENT_PREFIX = "phoenix-coupons-"


class FencedInstanceIdError(BrokerResponseError):  # type: ignore[misc]
    errno = 82
    message = "FENCED_INSTANCE_ID"
    description = (
        "The broker rejected this static consumer since another consumer with the same "
        "group.instance.id has registered with a different member.id."
    )


# aiokafka maps unknown codes to UnknownError, losing which one it was; a later aiokafka that
# maps 82 keeps its own class.
kafka_errors.setdefault(FencedInstanceIdError.errno, FencedInstanceIdError)


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
    coordinator = getattr(consumer, "_coordinator", None)
    return coordinator is not None and not coordinator.member_id


def joined(consumer: AIOKafkaConsumer) -> bool:
    """A member of the group whose coordinator is reachable: aiokafka forgets the coordinator
    when a heartbeat or commit cannot reach it."""
    coordinator = getattr(consumer, "_coordinator", None)
    return (
        coordinator is not None
        and bool(coordinator.member_id)
        and coordinator.generation > 0
        and coordinator.coordinator_id is not None
    )


def leave_on_stop(consumer: AIOKafkaConsumer) -> None:
    """aiokafka sends no LeaveGroup for a static member, so the partitions of a worker that
    stops would wait for its session to expire before moving. A stopping static worker leaves
    as a dynamic one would: they move at once (the next owner starts at the offsets committed
    on revocation). Also used by a fenced worker, so that its last rejoin does not take the
    membership from the process that fenced it."""
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is not None and getattr(coordinator, "_group_instance_id", None) is not None:
        coordinator._group_instance_id = None
