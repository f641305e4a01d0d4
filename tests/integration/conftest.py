"""Fixtures of the integration tier beside tests/conftest.py's."""

import uuid
from collections.abc import AsyncIterator

import pytest

from phoenix_coupons.adapters.mongo import Mongo
from phoenix_coupons.settings import Settings


@pytest.fixture
async def own_mongo(settings: Settings) -> AsyncIterator[Mongo]:
    """A database of this test's own, dropped at the end: for tests that walk or count whole
    collections (migrations), which the session's shared database would mix into."""
    name = f"own_{uuid.uuid4().hex[:8]}"
    mongo = Mongo(settings.mongodb_uri or "", name, 3600)
    yield mongo
    await mongo.client.drop_database(name)
    await mongo.close()
