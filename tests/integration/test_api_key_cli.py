"""`python -m phoenix_coupons api-key ...` as an operator runs it: a subprocess against the
test servers, whose keys then work (or stop working) against the API."""

import asyncio
import json
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from phoenix_coupons.bootstrap import Container
from phoenix_coupons.services.secrets_box import SecretBox, key_hash
from phoenix_coupons.settings import Settings
from tests.conftest import TEST_SECRET

KEY_FORMAT = re.compile(r"^pk_[A-Za-z0-9_-]{32,}$")
URL_VARIABLES = (
    "MONGODB_URI",
    "PHOENIX_MONGODB_URI",
    "KAFKA_BOOTSTRAP_SERVERS",
    "PHOENIX_KAFKA_BOOTSTRAP_SERVERS",
)


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, f"exit {self.code}: {self.err}"
        return json.loads(self.out)


async def cli(env: dict[str, str], *args: str) -> Run:
    return await phoenix_coupons(env, "api-key", *args)


async def phoenix_coupons(env: dict[str, str], *args: str) -> Run:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "phoenix_coupons",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


def base_env(settings: Settings, data_dir: Path) -> dict[str, str]:
    """The caller's environment without any server URL or PHOENIX_ setting of its own."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in URL_VARIABLES and not k.startswith("PHOENIX_")
    }
    env.update(
        PHOENIX_MONGODB_DATABASE=settings.mongodb_database,
        PHOENIX_SECRET_KEY=TEST_SECRET,
        PHOENIX_DATA_DIR=str(data_dir),
    )
    return env


@pytest.fixture
def env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    assert settings.mongodb_uri
    return {**base_env(settings, tmp_path), "MONGODB_URI": settings.mongodb_uri}


def bearer(created: dict[str, Any]) -> dict[str, str]:
    now = int(time.time())
    claims = {"sub_type": "admin", "sub_id": created["id"], "iat": now, "exp": now + 300}
    return {"Authorization": f"Bearer {jwt.encode(claims, created['key'], algorithm='HS256')}"}


def api_key(created: dict[str, Any]) -> dict[str, str]:
    return {"X-API-Key": created["key"]}


async def test_create_prints_id_and_plaintext_once(
    env: dict[str, str], container: Container, tenant: str
) -> None:
    run = await cli(
        env, "create", "--name", "ops", "--scopes", "coupons:read,rewards:write", "--tenant", tenant
    )
    created = run.json()
    assert str(uuid.UUID(created["id"])) == created["id"]
    assert KEY_FORMAT.match(created["key"]), created["key"]
    assert created["name"] == "ops"
    assert created["scopes"] == ["coupons:read", "rewards:write"]
    assert created["tenant_id"] == tenant
    assert created["created_at"]
    again = (await cli(env, "create", "--name", "ops", "--scopes", "coupons:read")).json()
    assert again["id"] != created["id"] and again["key"] != created["key"]
    assert again["tenant_id"] is None

    # At rest: a hash for look-up and the secret encrypted with PHOENIX_SECRET_KEY, no plaintext.
    doc = await container.mongo.api_keys.find_one({"key_id": created["id"]})
    assert doc is not None
    assert created["key"] not in json.dumps(doc, default=str)
    assert created["key"][3:] not in json.dumps(doc, default=str)
    assert doc["_id"] == key_hash(created["key"])  # keyed by its hash
    assert doc["secret_enc"].startswith("v1:")
    assert SecretBox(TEST_SECRET).decrypt(doc["secret_enc"]) == created["key"]
    assert doc["tenant_id"] == tenant and doc.get("revoked_at") is None


async def test_created_key_works_against_the_api(
    env: dict[str, str], client: httpx.AsyncClient, tenant: str
) -> None:
    scopes = "rewards:read,rewards:write,coupons:read"
    created = (await cli(env, "create", "--name", "cli", "--scopes", scopes)).json()
    rewards = f"/v1/tenants/{tenant}/rewards"
    response = await client.post(
        rewards,
        headers=api_key(created),
        json={"name": "100 Bonus Points", "reward_type": "points", "payload": {"amount": 100}},
    )
    assert response.status_code == 201, response.text
    item = response.json()
    for headers in (api_key(created), bearer(created)):
        response = await client.get(rewards, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json() == {"rewards": [item], "total": 1}
    # Scopes it lacks are refused, and the unbound key may list across tenants.
    response = await client.post(f"/v1/tenants/{tenant}/coupons", headers=api_key(created), json={})
    assert response.status_code == 403 and response.json()["error"] == "missing_scope"
    response = await client.get(f"/v1/coupons?tenant_id={tenant}", headers=api_key(created))
    assert response.status_code == 200, response.text
    assert response.json() == {"definitions": [], "total": 0}


async def test_tenant_bound_key_from_the_cli(
    env: dict[str, str], client: httpx.AsyncClient, tenant: str
) -> None:
    created = (
        await cli(env, "create", "--name", "t", "--scopes", "rewards:read", "--tenant", tenant)
    ).json()
    own = await client.get(f"/v1/tenants/{tenant}/rewards", headers=bearer(created))
    assert own.status_code == 200, own.text
    assert own.json() == {"rewards": [], "total": 0}
    other = await client.get(f"/v1/tenants/{tenant}-x/rewards", headers=api_key(created))
    assert other.status_code == 403, other.text
    assert other.json()["error"] == "tenant_forbidden"


async def test_list_never_shows_secrets(env: dict[str, str], tenant: str) -> None:
    created = (
        await cli(env, "create", "--name", "listed", "--scopes", "coupons:read", "--tenant", tenant)
    ).json()
    run = await cli(env, "list")
    listed = run.json()
    assert isinstance(listed, list)
    mine = [k for k in listed if k["id"] == created["id"]]
    assert mine == [
        {
            "id": created["id"],
            "name": "listed",
            "scopes": ["coupons:read"],
            "tenant_id": tenant,
            "created_at": mine[0]["created_at"],
            "revoked_at": None,
        }
    ]
    for secret in (created["key"], created["key"][3:], key_hash(created["key"]), "v1:"):
        assert secret not in run.out
        assert secret not in run.err
    assert all(set(k) == set(mine[0]) for k in listed)


async def test_revoke_is_effective_on_the_next_request(
    env: dict[str, str], client: httpx.AsyncClient, tenant: str
) -> None:
    created = (
        await cli(env, "create", "--name", "gone", "--scopes", "rewards:read", "--tenant", tenant)
    ).json()
    url = f"/v1/tenants/{tenant}/rewards"
    token = bearer(created)
    for headers in (api_key(created), token):
        assert (await client.get(url, headers=headers)).status_code == 200

    assert (await cli(env, "revoke", created["id"])).json() == {
        "id": created["id"],
        "revoked": True,
    }
    for headers in (api_key(created), token, bearer(created)):
        response = await client.get(url, headers=headers)
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "revoked_api_key"

    listed = {k["id"]: k for k in (await cli(env, "list")).json()}
    assert listed[created["id"]]["revoked_at"] is not None
    # Revoking again: no active key with that id.
    again = await cli(env, "revoke", created["id"])
    assert again.code == 1
    assert created["id"] in again.err


async def test_revoke_unknown_id_exits_1(env: dict[str, str]) -> None:
    unknown = str(uuid.uuid4())
    run = await cli(env, "revoke", unknown)
    assert run.code == 1
    assert f"no active API key with id {unknown}" in run.err
    assert run.out == ""


@pytest.mark.parametrize("scopes", ["coupons:read,coupons:admin", "everything", " , "])
async def test_bad_scopes_are_refused(
    env: dict[str, str], container: Container, scopes: str
) -> None:
    name = f"bad-{uuid.uuid4().hex[:8]}"
    run = await cli(env, "create", "--name", name, "--scopes", scopes)
    assert run.code != 0
    assert run.out == ""
    assert "error:" in run.err and "scope" in run.err
    if "coupons:admin" in scopes:
        assert "unknown scopes: coupons:admin" in run.err
    assert await container.mongo.api_keys.count_documents({"name": name}) == 0


async def test_no_url_and_no_services_env_is_a_clear_error(
    settings: Settings, tmp_path: Path
) -> None:
    run = await cli(base_env(settings, tmp_path), "list")
    assert run.code == 2
    assert "MONGODB_URI is not set" in run.err
    assert "Traceback" not in run.err


async def test_services_env_in_data_dir_reaches_the_same_database(
    settings: Settings, container: Container, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """No URL in the environment: the CLI reads the `services.env` that `make run` writes."""
    data_dir = tmp_path / "phoenix"
    data_dir.mkdir()
    (data_dir / "services.env").write_text(
        f"# written by the embedded servers\n"
        f"KAFKA_BOOTSTRAP_SERVERS={settings.kafka_bootstrap_servers}\n"
        f"MONGODB_URI={settings.mongodb_uri}\n"
    )
    env = base_env(settings, data_dir)
    created = (await cli(env, "create", "--name", "via-env", "--scopes", "coupons:read")).json()
    assert await container.mongo.api_keys.count_documents({"key_id": created["id"]}) == 1
    response = await client.get("/v1/coupons?limit=1", headers=api_key(created))
    assert response.status_code == 200, response.text
    assert created["id"] in {k["id"] for k in (await cli(env, "list")).json()}


@pytest.mark.parametrize(
    ("tenant", "words"),
    [
        ("", "empty"),
        ("   ", "tenant"),
        ("acme\n", "tenant"),
        ("-acme", "tenant"),
        ("acme/other", "tenant"),
        ("ac me", "tenant"),
        ("acmé", "tenant"),
        ("a" * 129, "128"),
    ],
    ids=[
        "empty",
        "blank",
        "trailing-newline",
        "leading-hyphen",
        "slash",
        "space",
        "non-ascii",
        "129",
    ],
)
async def test_bad_tenant_is_refused_and_no_key_is_made(
    env: dict[str, str], container: Container, tenant: str, words: str
) -> None:
    """`--tenant ""` once made a key bound to no tenant: an all-tenant key."""
    name = f"bad-tenant-{uuid.uuid4().hex[:8]}"
    run = await cli(env, "create", "--name", name, "--scopes", "coupons:read", f"--tenant={tenant}")
    assert run.code == 2, run
    assert run.out == ""
    assert "error:" in run.err and "--tenant" in run.err and words in run.err, run.err
    assert "Traceback" not in run.err
    assert await container.mongo.api_keys.count_documents({"name": name}) == 0


async def test_tenant_of_the_url_pattern_is_accepted(env: dict[str, str]) -> None:
    tenant = f"Acme_1.prod-{uuid.uuid4().hex[:6]}"
    created = (
        await cli(env, "create", "--name", "ok", "--scopes", "coupons:read", f"--tenant={tenant}")
    ).json()
    assert created["tenant_id"] == tenant


@pytest.mark.parametrize("name", ["", "   ", "n" * 201])
async def test_bad_name_is_refused(env: dict[str, str], name: str) -> None:
    run = await cli(env, "create", "--name", name, "--scopes", "coupons:read")
    assert run.code == 2, run
    assert run.out == ""
    assert "error:" in run.err and "--name" in run.err, run.err
    if len(name) > 200:
        assert "200" in run.err
