"""`name_id` is `str(uuid.uuid5(...))` for every name: ids stored by earlier versions (coupon
ids, event ids) must come out the same."""

import uuid

from hypothesis import given
from hypothesis import strategies as st

from phoenix_coupons.domain.events import EVENT_NAMESPACE
from phoenix_coupons.domain.issue_keys import COUPON_NAMESPACE
from phoenix_coupons.domain.name_ids import name_id

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=200)


@given(texts, st.sampled_from([COUPON_NAMESPACE, EVENT_NAMESPACE, uuid.NAMESPACE_DNS]))
def test_the_same_id_as_uuid5(name: str, namespace: uuid.UUID) -> None:
    assert name_id(namespace, name) == str(uuid.uuid5(namespace, name))


def test_a_known_id() -> None:
    """Pinned: RFC 9562's own example (namespace DNS, "www.example.com")."""
    assert name_id(uuid.NAMESPACE_DNS, "www.example.com") == "2ed6657d-e927-568b-95e1-2665a8aea6a2"
