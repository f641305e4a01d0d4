"""A code's timeline through the HTTP API (`GET .../codes/{code}/history`) on the embedded
servers: a coupon issued by an inbound event (the worker) and by a bulk request, redeemed,
rolled back and revoked through the API, read in time order with each step's actor; the steps
stored in `code_history` merged with the coupon's own, paged by offset and by cursor; case,
bad parameters. (404s, scopes, tenant isolation and the look-up limit: with the other code
queries in test_coupon_queries.py and test_lookup_limit.py.)"""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from consumers.loop import Worker
from phoenix_coupons.adapters.code_history import MongoCodeHistory
from phoenix_coupons.api.pages import NEXT_AFTER
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.domain.codes import normalize
from phoenix_coupons.domain.history import CLOCK_SKEW, Actor, HistoryEntry, HistoryKind
from phoenix_coupons.settings import Settings
from tests.conftest import KeyFactory
from tests.integration.test_coupon_queries import get, got
from tests.integration.test_redemption import Tenant, at
from tests.integration.test_worker import (
    _start,
    _stop,
    create_definition,
    event,
    produce_event,
    uid,
    until_cached,
    until_coupons,
)

Json = dict[str, Any]


@pytest.fixture
def api(client: httpx.AsyncClient, admin: Json, reward: Json, tenant: str) -> Tenant:
    return Tenant(client, tenant, admin["headers"], reward)


async def history(api: Tenant, code: str, query: str = "") -> Json:
    return await got(api, f"/codes/{code}/history{query}")


def actor(step: Json) -> tuple[str, str | None] | None:
    a = step["actor"]
    return None if a is None else (a["type"], a["id"])


async def generate(api: Tenant, definition_id: str, user: str, request_id: str) -> str:
    response = await api.client.post(
        f"{api.base}/coupons/{definition_id}/generate",
        json={"user_ids": [user]},
        headers={**api.headers, "X-Request-Id": request_id},
    )
    assert response.status_code == 201, response.text
    code: str = response.json()["coupons"][0]["code"]
    return code


async def test_a_bulk_coupons_story_in_time_order_with_its_actors(
    api: Tenant, admin: Json, make_key: KeyFactory
) -> None:
    defn = await api.define()
    request_id = uid("req")
    code = await generate(api, defn["id"], "alice", request_id)
    redemption = await api.redeemed(code, "alice")
    assert (await api.rollback(redemption["redemption_id"])).status_code == 200
    again = await api.redeemed(code, "alice")
    revoker = await make_key(scopes="coupons:write", tenant=api.id)
    response = await api.client.post(f"{api.base}/codes/{code}/revoke", headers=revoker["headers"])
    assert response.status_code == 200, response.text
    revoked_at = response.json()["coupon"]["revoked_at"]

    body = await history(api, code.lower())  # case is ignored, as the other code queries do
    assert (body["code"], body["coupon_id"]) == (code, redemption["coupon"]["id"])
    assert "next_after" not in body  # the last page keeps only its fields
    steps = body["events"]
    assert [at(s["at"]) for s in steps] == sorted(at(s["at"]) for s in steps)
    issued, revoked = steps[0], steps[-1]
    assert issued["type"] == "issued" and actor(issued) == ("api_key", admin["id"])
    assert issued["details"] == {
        "source": "bulk",
        "kind": "issued",
        "definition_id": defn["id"],
        "user_id": "alice",
        "request_id": request_id,
    }
    assert at(issued["at"]) == at(redemption["coupon"]["issued_at"])
    assert revoked["type"] == "revoked" and actor(revoked) == ("api_key", revoker["id"])
    assert at(revoked["at"]) == at(revoked_at)
    # Between them, whatever the redemptions stored: each by the redeeming key, in order.
    between = steps[1:-1]
    assert {s["type"] for s in between} <= {"redeemed", "rolled_back"}
    assert all(actor(s) == ("api_key", admin["id"]) for s in between)
    if between:
        assert at(between[-1]["at"]) >= at(again["redeemed_at"])


async def test_a_shared_codes_story_starts_with_its_definition(api: Tenant, admin: Json) -> None:
    response = await api.client.post(
        f"{api.base}/coupons",
        json={
            "name": "shared",
            "config": {
                "reward_item_id": api.reward["item_id"],
                "code_format": "custom",
                "custom_code": "HIST-SHARED",
                "usage_limit": {"limit_type": "unlimited"},
            },
        },
        headers={**api.headers, "X-Request-Id": "req-shared-1"},
    )
    assert response.status_code == 201, response.text
    defn = response.json()
    [issued] = (await history(api, "hist-shared"))["events"]
    assert (issued["type"], actor(issued)) == ("issued", ("api_key", admin["id"]))
    assert issued["details"] == {
        "source": "definition",
        "kind": "shared",
        "definition_id": defn["id"],
        "request_id": "req-shared-1",
    }
    assert at(issued["at"]) == at(defn["created_at"])


async def stored_steps(
    container: Container, tenant: str, code: str, issued: datetime, revoked: datetime
) -> None:
    """Eight steps stored as the other writers store them: one between the coupon's issuance
    and its revocation, two in one millisecond, one of an earlier holder of the code (before
    its issuance) that the timeline leaves out."""
    kinds: list[HistoryKind] = ["released", "redeemed", "rolled_back", "expiring"]
    first = HistoryEntry(
        tenant, normalize(code), issued + timedelta(milliseconds=1), "reserved", "ref-0", None
    )
    steps = [
        HistoryEntry(
            tenant,
            normalize(code),
            revoked + timedelta(seconds=i),
            kind,
            f"ref-{i}",
            Actor("scheduler") if kind == "expiring" else Actor("api_key", "key-x"),
            {"n": i},
        )
        for i, kind in enumerate(kinds, start=1)
    ]
    steps += [
        first,
        HistoryEntry(tenant, normalize(code), revoked + timedelta(seconds=2), "redeemed", "twin"),
        HistoryEntry(tenant, normalize(code), revoked + timedelta(hours=1), "expired", "end"),
        HistoryEntry(tenant, normalize(code), issued - CLOCK_SKEW * 2, "redeemed", "earlier"),
    ]
    await MongoCodeHistory(container.mongo).record(steps)


async def test_pages_by_offset_and_by_cursor_are_slices_of_the_whole(
    api: Tenant, container: Container
) -> None:
    defn = await api.define()
    code = await generate(api, defn["id"], "bob", uid("req"))
    coupon = (await api.revoke(code))["coupon"]
    issued, revoked = at(coupon["issued_at"]), at(coupon["revoked_at"])
    assert revoked - issued >= timedelta(milliseconds=2)  # an HTTP call apart: room for one
    await stored_steps(container, api.id, code, issued, revoked)
    whole = (await history(api, code, "?limit=500"))["events"]
    assert [(s["type"], s["details"].get("n")) for s in whole] == [
        ("issued", None),
        ("reserved", None),
        ("revoked", None),
        ("released", 1),
        ("redeemed", 2),
        ("redeemed", None),  # "twin": the same millisecond, in kind then ref order
        ("rolled_back", 3),
        ("expiring", 4),
        ("expired", None),
    ]
    assert actor(whole[1]) is None
    assert actor(whole[7]) == ("scheduler", None)
    for offset in range(0, 10, 2):
        response = await get(api, f"/codes/{code}/history?limit=2&offset={offset}")
        assert response.json()["events"] == whole[offset : offset + 2], offset
        assert (NEXT_AFTER in response.headers) == (offset + 2 < len(whole))
    walked: list[Json] = []
    query = "?limit=4"
    while True:
        response = await get(api, f"/codes/{code}/history{query}")
        walked += response.json()["events"]
        cursor = response.headers.get(NEXT_AFTER)
        if cursor is None:
            break
        assert response.json()["next_after"] == cursor
        query = f"?limit=4&after={cursor}&offset=3"  # the cursor wins over the offset
    assert walked == whole


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("offset=-1", "offset"),
        ("after=x", "after"),
        ("after=000000000000001|redeemed|a b", "after"),
    ],
)
async def test_bad_page_parameters_are_422(api: Tenant, query: str, field: str) -> None:
    defn = await api.define()
    code = await generate(api, defn["id"], "carol", uid("req"))
    response = await get(api, f"/codes/{code}/history?{query}")
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation_error"
    assert any(d["field"].endswith(field) for d in body["details"]), body


# --- issued by an inbound event --------------------------------------------------------------


@pytest.fixture
async def worker(container: Container) -> AsyncIterator[Worker]:
    w = container.worker()
    task = await _start(w)
    yield w
    await _stop(w, task)


@pytest.fixture
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await p.start()
    yield p
    await p.stop()


async def test_an_event_coupons_story_names_the_event_that_issued_it(
    worker: Worker,
    producer: AIOKafkaProducer,
    container: Container,
    settings: Settings,
    api: Tenant,
    admin: Json,
) -> None:
    data = {"achievement_id": "history-win"}
    trigger = "achievement_completed"
    defn = await create_definition(
        api.client, admin, api.id, api.reward, trigger, data, prefix="EV-", length=8
    )
    record = event(trigger, api.id, uid("user"), data)
    await until_cached(container, record, defn)
    await produce_event(producer, settings, record)
    (coupon,) = await until_coupons(container, api.id, 1)
    redemption = await api.redeemed(coupon["code"], record["user_id"])
    steps = (await history(api, coupon["code"]))["events"]
    issued = steps[0]
    assert issued["type"] == "issued" and actor(issued) == ("event", record["event_id"])
    assert issued["details"] == {
        "source": "event",
        "kind": "issued",
        "definition_id": defn["id"],
        "user_id": record["user_id"],
    }
    assert at(issued["at"]) <= at(redemption["redeemed_at"]) <= datetime.now(UTC)
    assert {s["type"] for s in steps[1:]} <= {"redeemed"}
