"""The worker's membership decisions on Apache Kafka's answers that the
embedded Kafka never gives: FENCED_INSTANCE_ID (82) as aiokafka 0.14 raises it, and which
group member is another process of the same worker id."""

from aiokafka.errors import KafkaError, UnknownError, UnknownMemberIdError, for_code

from consumers.membership import FencedInstanceIdError, Membership, is_fenced_instance
from phoenix_coupons.settings import Settings


def test_code_82_has_a_class_and_every_shape_aiokafka_raises_it_in_is_recognised() -> None:
    assert for_code(82) is FencedInstanceIdError
    error = for_code(82)()
    # OffsetCommit: the error itself.
    assert is_fenced_instance(error)
    # JoinGroup and SyncGroup: `raise Errors.KafkaError(repr(err))`.
    assert is_fenced_instance(KafkaError(repr(error)))
    # Heartbeat: `Errors.KafkaError(f"Unexpected exception in heartbeat task: {err!r}")`.
    assert is_fenced_instance(KafkaError(f"Unexpected exception in heartbeat task: {error!r}"))
    # Not the others.
    assert not is_fenced_instance(UnknownMemberIdError())
    assert not is_fenced_instance(KafkaError(repr(UnknownError())))
    assert not is_fenced_instance(RuntimeError("boom"))


def test_static_only_with_an_explicit_worker_id_and_client_ids_unique_per_process() -> None:
    dynamic = Membership.of(Settings(worker_id=None))
    assert (dynamic.static, dynamic.instance_id) == (False, None)
    static = Membership.of(Settings(worker_id="w-1"))
    assert (static.static, static.instance_id) == (True, "w-1")
    again = Membership.of(Settings(worker_id="w-1"))
    assert static.client_id != again.client_id
    assert static.client_id.startswith("phoenix-coupons-w-1.")
    assert Settings(worker_id="  ").worker_id is None  # blank: unset


def test_another_process_of_the_same_worker_id_is_told_apart_from_itself_and_others() -> None:
    me = Membership("w-1", "phoenix-coupons-w-1.aaaa1111")
    assert me.held_elsewhere([{"client_id": "phoenix-coupons-w-1.aaaa1111"}]) is None
    assert me.held_elsewhere([{"client_id": "phoenix-coupons-w-10.bbbb2222"}]) is None
    assert me.held_elsewhere([{"client_id": "phoenix-coupons-w-1.x.bbbb2222"}]) is None
    assert me.held_elsewhere([{"client_id": "something-else"}, {}]) is None
    other = "phoenix-coupons-w-1.bbbb2222"
    assert me.held_elsewhere([{"client_id": me.client_id}, {"client_id": other}]) == other
    message = me.fenced_message(other)
    assert "PHOENIX_WORKER_ID='w-1'" in message and other in message
