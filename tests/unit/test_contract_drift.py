"""The committed contract files must be what the models generate: upstream and downstream
teams read those files, so a model change without `make schemas` fails here."""

import json

from schemas import export


def test_committed_contract_files_match_the_models() -> None:
    expected = export.rendered()
    stale = [
        name
        for name, text in expected.items()
        if not (export.OUT / name).is_file() or (export.OUT / name).read_text() != text
    ]
    assert not stale, f"contract files out of date, run `make schemas`: {stale}"
    extra = {p.name for p in export.OUT.iterdir()} - set(expected)
    assert not extra, f"files no model generates: {sorted(extra)}"


def test_asyncapi_documents_every_topic_and_message() -> None:
    doc = json.loads((export.OUT / "asyncapi.json").read_text())
    assert doc["asyncapi"].startswith("3.")
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {
        "phoenix.achievements",
        "phoenix.streaks",
        "phoenix.leaderboards",
        "phoenix.coupons.issued",
        "phoenix.coupons.redeemed",
        "phoenix.coupons.expiry",
        "phoenix.coupons.dlq",
    }
    for channel in doc["channels"].values():
        for message in channel["messages"].values():
            ref = message["payload"].get("$ref")
            if ref:
                assert (export.OUT / ref.removeprefix("./")).is_file()
    for op in doc["operations"].values():
        assert op["channel"]["$ref"].removeprefix("#/channels/") in doc["channels"]


def test_inbound_schemas_require_the_contract_fields() -> None:
    streak = json.loads((export.OUT / "streak_milestone.schema.json").read_text())
    assert set(streak["required"]) >= {
        "event_id",
        "event_type",
        "tenant_id",
        "user_id",
        "occurred_at",
        "data",
    }
    data = streak["$defs"]["StreakData"]
    assert set(data["required"]) == {"streak_id", "streak_length"}


def test_expiry_events_carry_the_coupon_and_its_expiry() -> None:
    for name, extra in (("coupon_expiring", {"remind_before"}), ("coupon_expired", set())):
        schema = json.loads((export.OUT / f"{name}.schema.json").read_text())
        assert set(schema["required"]) >= {
            "event_id",
            "occurred_at",
            "tenant_id",
            "user_id",
            "coupon_id",
            "code",
            "definition_id",
            "reward_item_id",
            "expires_at",
            *extra,
        }
