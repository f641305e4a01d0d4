"""docker-compose.yml's `sharded` profile is wired as docs/scaling.md says: a config server
replica set, two shard replica sets, `mongos`, an init that runs the plan printed by
`phoenix_coupons.adapters.shard_plan`, and the API and worker on `mongos`. (No Docker
engine here: the file's structure is checked, the stack is not run.)"""

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def services() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded["services"]


def sharded() -> dict[str, Any]:
    return {n: s for n, s in services().items() if "sharded" in s.get("profiles", [])}


def test_the_profile_holds_a_config_server_two_shards_mongos_and_the_init() -> None:
    found = sharded()
    assert "--configsvr" in found["mongo-config"]["command"]
    shards = [n for n, s in found.items() if "--shardsvr" in s.get("command", [])]
    assert shards == ["mongo-shard1", "mongo-shard2"]
    assert found["mongos"]["command"][:3] == ["mongos", "--configdb", "cfg/mongo-config:27019"]
    init = " ".join(found["mongo-init"]["command"])
    assert "sh.addShard('shard1/mongo-shard1:27018')" in init
    assert "sh.addShard('shard2/mongo-shard2:27018')" in init
    assert "load('/plan/shard.js')" in init
    assert set(found["mongo-init"]["depends_on"]) == {
        "shard-plan",
        "mongos",
        "mongo-shard1",
        "mongo-shard2",
    }


def test_the_init_runs_the_plan_the_code_prints() -> None:
    plan = sharded()["shard-plan"]
    assert "python -m phoenix_coupons.adapters.shard_plan > /plan/shard.js" in " ".join(
        plan["entrypoint"]
    )
    assert plan["volumes"] == ["shard-plan:/plan"]
    assert sharded()["mongo-init"]["volumes"] == ["shard-plan:/plan:ro"]


def test_the_api_and_worker_of_the_profile_use_mongos_once_it_is_sharded() -> None:
    found = sharded()
    for name, command in (("api-sharded", None), ("worker-sharded", ["phoenix-coupons", "worker"])):
        service = found[name]
        assert service["environment"]["MONGODB_URI"] == "mongodb://mongos:27017"
        assert service["environment"]["PHOENIX_SECRET_KEY"].startswith("${PHOENIX_SECRET_KEY:?")
        assert service["depends_on"]["mongo-init"] == {
            "condition": "service_completed_successfully"
        }
        assert service.get("command") == command


def test_the_plain_stack_is_unchanged_by_the_profile() -> None:
    plain = {n: s for n, s in services().items() if not s.get("profiles")}
    assert set(plain) == {"kafka", "mongo", "api", "worker"}
    for name in ("api", "worker"):
        assert plain[name]["environment"]["MONGODB_URI"] == "mongodb://mongo:27017/?replicaSet=rs0"
