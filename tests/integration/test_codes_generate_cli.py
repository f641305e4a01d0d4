"""`phoenix-coupons codes generate` against a running API (uvicorn on a port, the job
runner started): the job submitted from a CSV file, its progress and summary printed (the
output captured), row errors listed; `--count N` for unassigned codes (one of the two
options, exactly); a refused header, a missing key and an API out of
reach each end with their message and exit code."""

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from phoenix_coupons.api.app import create_app
from phoenix_coupons.bootstrap import Container
from phoenix_coupons.cli_http import EXIT_UNREACHABLE, EXIT_USAGE
from phoenix_coupons.devservers import free_port
from tests.integration.test_api_key_cli import phoenix_coupons
from tests.integration.test_generation import create_definition
from tests.support import wait_until

Json = dict[str, Any]


@pytest.fixture
async def api_url(container: Container) -> AsyncIterator[str]:
    port = free_port()
    app = create_app(container, manage_lifecycle=False)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    container.job_runner.start()
    try:
        await wait_until(lambda: server.started)
        yield f"http://127.0.0.1:{port}"
    finally:
        await container.job_runner.stop()
        server.should_exit = True
        await task


async def cli(*args: str, key: str | None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PHOENIX_API_KEY"}
    if key is not None:
        env["PHOENIX_API_KEY"] = key
    run = await phoenix_coupons(env, *args)
    return run.code, run.out, run.err


async def test_codes_generate_follows_the_job_and_prints_its_summary(
    api_url: str, client: httpx.AsyncClient, admin: Json, reward: Json, tenant: str, tmp_path: Path
) -> None:
    defn = await create_definition(client, tenant, admin, reward)
    users = tmp_path / "users.csv"
    lines = ["user_id,metadata.channel"] + [f"user-{i},mail" for i in range(250)]
    lines += ["user-3,mail", "user-x,mail,extra,fields", " ,mail"]
    users.write_text("\n".join(lines) + "\n")
    base = ["codes", "generate", defn["id"], "--tenant", tenant, "--api-url", api_url]
    code, out, err = await cli(*base, "--users", str(users), "--poll", "0.1", key=admin["key"])
    assert code == 1, (out, err)  # some rows were refused
    assert "253 rows queued" in out
    progress = [line for line in out.splitlines() if "rows/s" in line]
    assert progress and progress[-1].startswith("succeeded: generated 251/253, failed 2")
    assert "succeeded: 251 generated, 2 failed of 253" in out
    assert "user_id repeats line 5" in out and "user_id must not be blank" in out
    listed = await client.get(
        f"/v1/tenants/{tenant}/coupons/{defn['id']}/codes", headers=admin["headers"]
    )
    assert listed.status_code == 200 and listed.json()["total"] == 251

    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,colour\nu1,red\n")
    code, out, err = await cli(*base, "--users", str(bad), key=admin["key"])
    assert code == EXIT_USAGE and "422 validation_error" in err and "header.colour" in err, (
        out,
        err,
    )
    code, _, err = await cli(*base, "--users", str(users), key=None)
    assert code == EXIT_USAGE and "PHOENIX_API_KEY" in err
    down = ["codes", "generate", defn["id"], "--tenant", tenant]
    down += ["--api-url", f"http://127.0.0.1:{free_port()}", "--users", str(users)]
    code, _, err = await cli(*down, key=admin["key"])
    assert code == EXIT_UNREACHABLE and "does not answer" in err


async def test_codes_generate_count_makes_unassigned_codes_with_progress(
    api_url: str, client: httpx.AsyncClient, admin: Json, reward: Json, tenant: str, tmp_path: Path
) -> None:
    defn = await create_definition(client, tenant, admin, reward)
    base = ["codes", "generate", defn["id"], "--tenant", tenant, "--api-url", api_url]
    code, out, err = await cli(*base, "--count", "150", "--poll", "0.1", key=admin["key"])
    assert code == 0, (out, err)
    assert "150 unassigned codes queued" in out
    progress = [line for line in out.splitlines() if "rows/s" in line]
    assert progress and progress[-1].startswith("succeeded: generated 150/150, failed 0")
    assert "succeeded: 150 generated, 0 failed of 150" in out and "row errors" not in out
    exported = await client.get(
        f"/v1/tenants/{tenant}/coupons/{defn['id']}/codes/export?format=jsonl",
        headers=admin["headers"],
    )
    rows = [json.loads(line) for line in exported.text.splitlines()]
    assert len(rows) == 150 and {(r["kind"], r["user_id"]) for r in rows} == {("unassigned", None)}

    users = tmp_path / "users.csv"
    users.write_text("user_id\nu1\n")
    for wrong in (["--count", "3", "--users", str(users)], [], ["--count", "0"]):
        code, _, err = await cli(*base, *wrong, key=admin["key"])
        assert code == EXIT_USAGE and ("--count" in err or "--users" in err), err
    custom = await create_definition(
        client, tenant, admin, reward, code_format="custom", custom_code="SHARED-CLI"
    )
    refused = ["codes", "generate", custom["id"], "--tenant", tenant, "--api-url", api_url]
    code, _, err = await cli(*refused, "--count", "3", key=admin["key"])
    assert code == EXIT_USAGE and "422 validation_error" in err and "count" in err, err


async def test_ctrl_c_detaches_without_cancelling_and_says_how_to_cancel(
    api_url: str,
    container: Container,
    client: httpx.AsyncClient,
    admin: Json,
    reward: Json,
    tenant: str,
    tmp_path: Path,
) -> None:
    await container.job_runner.stop()  # the job stays queued while the command follows it
    defn = await create_definition(client, tenant, admin, reward)
    users = tmp_path / "users.csv"
    users.write_text("user_id\nu1\nu2\n")
    env = {**os.environ, "PHOENIX_API_KEY": admin["key"], "PYTHONUNBUFFERED": "1"}
    args = ["codes", "generate", defn["id"], "--tenant", tenant, "--api-url", api_url]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "phoenix_coupons",
        *args,
        "--users",
        str(users),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    first = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert b"2 rows queued" in first, first
    job_id = first.decode().split()[1].rstrip(":")
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 130, (out, err)
    assert f"detached: job {job_id} goes on" in err.decode()
    assert f"generation-jobs/{job_id}/cancel" in err.decode()
    url = f"/v1/tenants/{tenant}/coupons/{defn['id']}/generation-jobs/{job_id}"
    job = (await client.get(url, headers=admin["headers"])).json()
    assert (job["status"], job["cancel_requested"]) == ("queued", False)
    await container.job_run.run_next()  # leave no job queued for the other tests
