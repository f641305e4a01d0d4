"""`phoenix-coupons`: run the service, migrate its data, manage API keys, and work with a
definition's codes over the HTTP API."""

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pymongo.errors import PyMongoError

from phoenix_coupons.adapters.migrations import require_migrated
from phoenix_coupons.adapters.mongo import unavailable
from phoenix_coupons.bootstrap import api_key_service, connect_mongo
from phoenix_coupons.cli_export import add_export_command, export_codes
from phoenix_coupons.cli_http import Api, ApiError, add_api_options
from phoenix_coupons.domain.errors import ConfigurationError, PhoenixError, ValidationFailed
from phoenix_coupons.logging import configure_logging
from phoenix_coupons.runtime import tune_gc
from phoenix_coupons.settings import Settings, load_services_env


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="phoenix-coupons", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    health = "with /healthz, /readyz and /metrics on PHOENIX_WORKER_PORT"
    for name, text, port in (
        ("run", "the whole service: event worker and admin API in one process", "API"),
        ("api", "the admin HTTP API (with the outbox relay)", "API"),
        ("worker", f"the event worker alone, {health}", "WORKER"),
        (
            "scheduler",
            "the expiry scheduler alone (reminders and expiry events, with the outbox relay), "
            + health,
            "WORKER",
        ),
        ("jobs", f"the generation job runner alone (with the outbox relay), {health}", "WORKER"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--host", help="bind address (default: PHOENIX_API_HOST)")
        cmd.add_argument("--port", type=int, help=f"port (default: PHOENIX_{port}_PORT)")
    codes = sub.add_parser(
        "codes", help="a definition's codes, over the HTTP API (--api-url, PHOENIX_API_KEY)"
    ).add_subparsers(dest="codes_command", required=True)
    gen = codes.add_parser(
        "generate",
        help="submit a generation job (N unassigned codes, or a CSV file of users) and "
        "follow it with a progress bar",
    )
    gen.add_argument("definition_id")
    gen.add_argument("--tenant", required=True, help="the definition's tenant id")
    what = gen.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--count",
        type=_positive,
        help="this many unassigned codes (owned by no user: whoever presents one first redeems it)",
    )
    what.add_argument(
        "--users",
        type=Path,
        help="a CSV file: user_id, optional code and metadata.<key> columns",
    )
    add_api_options(gen)
    gen.add_argument(
        "--poll", type=float, default=0.5, help="seconds between progress reads (default 0.5)"
    )
    migrate = sub.add_parser(
        "migrate", help="bring data stored by an earlier version to this version's layout"
    )
    migrate.add_argument(
        "--recount", action="store_true", help="also compute every kept count again"
    )
    keys = sub.add_parser("api-key", help="manage admin API keys").add_subparsers(
        dest="key_command", required=True
    )
    create = keys.add_parser("create", help="create a key; prints its plaintext once")
    create.add_argument("--name", required=True, help="1 to 200 characters")
    create.add_argument("--scopes", required=True, help="comma-separated, e.g. coupons:read")
    create.add_argument(
        "--tenant",
        help="bind the key to one tenant: an id of the URL paths (leave out for every tenant)",
    )
    keys.add_parser("list", help="list keys (never their secrets)")
    revoke = keys.add_parser("revoke", help="revoke a key; effective on the next request")
    revoke.add_argument("id")
    add_export_command(codes)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _codes(settings: Settings, args: argparse.Namespace) -> int:
    """`codes export` or `codes generate` (an ApiError is answered by `main`)."""
    if args.codes_command == "export":
        return export_codes(args, settings.api_port)
    from phoenix_coupons import cli_jobs

    api = Api.of(args.api_url, args.api_key, settings.api_port)
    source = args.users if args.count is None else args.count
    return cli_jobs.run(api, args.tenant, args.definition_id, source, args.poll)


def _serve(settings: Settings, host: str | None, port: int | None, with_worker: bool) -> int:
    import uvicorn

    from phoenix_coupons.api.app import create_app, server_options
    from phoenix_coupons.bootstrap import Container

    container = Container(settings)
    app = create_app(container, worker=container.worker() if with_worker else None)
    tune_gc(settings.gc_threshold)
    uvicorn.run(app, **server_options(settings, host, port))
    return 0


class MongoUnreachable(PhoenixError):
    """MongoDB did not answer a CLI command: one line for the operator, not a traceback."""

    code = "mongodb_unreachable"


def _hosts(uri: str) -> str:
    """The hosts of a connection string, without its credentials."""
    found = re.match(r"mongodb(?:\+srv)?://(?:[^@/]*@)?([^/?]*)", uri)
    return found.group(1) if found else "(unparsable MONGODB_URI)"


def _mongo_error(settings: Settings, from_env: bool, exc: PyMongoError) -> MongoUnreachable:
    where = (
        "MONGODB_URI"
        if from_env
        else f"{settings.services_env}, written by `make run`: is it still running?"
    )
    hosts = _hosts(settings.mongodb_uri or "")
    if unavailable(exc):
        return MongoUnreachable(f"MongoDB at {hosts} does not answer (address from {where})")
    return MongoUnreachable(f"MongoDB at {hosts} (address from {where}): {exc}")


async def _api_key(settings: Settings, args: argparse.Namespace, uri_from_env: bool) -> int:
    mongo = connect_mongo(settings)
    try:
        # A quick look first: a stopped `make run` leaves nothing listening, and PyMongo would
        # wait its whole server selection time before saying so.
        await mongo.ping(settings.mongodb_ping_timeout_ms / 1000)
        await require_migrated(mongo.db)
        await mongo.ensure_indexes()
        service = api_key_service(settings, mongo)
        if args.key_command == "create":
            key, plaintext = await service.create(args.name, args.scopes, args.tenant)
            _print(
                {
                    "id": key.id,
                    "key": plaintext,
                    "name": key.name,
                    "scopes": list(key.scopes),
                    "tenant_id": key.tenant_id,
                    "created_at": key.created_at.isoformat(),
                }
            )
        elif args.key_command == "list":
            _print(
                [
                    {
                        "id": k.id,
                        "name": k.name,
                        "scopes": list(k.scopes),
                        "tenant_id": k.tenant_id,
                        "created_at": k.created_at.isoformat(),
                        "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
                    }
                    for k in await service.all()
                ]
            )
        elif not await service.revoke(args.id):
            print(f"no active API key with id {args.id}", file=sys.stderr)
            return 1
        else:
            _print({"id": args.id, "revoked": True})
        return 0
    except PyMongoError as exc:
        raise _mongo_error(settings, uri_from_env, exc) from exc
    finally:
        await mongo.close()


async def _migrate(settings: Settings, recount: bool, uri_from_env: bool) -> int:
    """Every step not done yet, then the indexes; prints what each step did."""
    from phoenix_coupons.adapters.migrations import migrate

    mongo = connect_mongo(settings)
    try:
        await mongo.ping(settings.mongodb_ping_timeout_ms / 1000)
        report = await migrate(mongo.db, recount=recount)
        await mongo.ensure_indexes()
    except PyMongoError as exc:
        raise _mongo_error(settings, uri_from_env, exc) from exc
    finally:
        await mongo.close()
    _print(
        {
            "steps": [
                {"name": s.name, "state": s.state, "migrated": s.migrated} for s in report.steps
            ],
            "recounted": report.recounted,
        }
    )
    return 0


async def _worker(settings: Settings, host: str | None, port: int | None) -> int:
    from consumers.health import HealthServer
    from phoenix_coupons.api.app import stop_worker
    from phoenix_coupons.bootstrap import Container

    container = Container(settings)
    # The worker ensures the topics, and fails without them.
    await container.start(topics=False, scheduler=True)
    worker = container.worker()
    tune_gc(settings.gc_threshold)
    health = HealthServer(
        host or settings.api_host,
        port or settings.worker_port,
        lambda: worker.ready,
        worker.not_ready_reasons,
    )
    await health.start()
    task = asyncio.create_task(worker.run(), name="worker")
    try:
        stopped = await _until_stopped(task)
        await stop_worker(worker, task)
        return 0 if stopped else 1
    finally:
        await health.stop()
        await container.stop()


async def _until_stopped(task: "asyncio.Future[Any] | None" = None) -> bool:
    """Until SIGTERM or SIGINT (True), or until `task` ends (False)."""
    import signal

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(stopping.wait())]
    if task is not None:
        waits.append(task)
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    return stopping.is_set()


async def _alone(settings: Settings, host: str | None, port: int | None, part: str) -> int:
    """One background part alone (`scheduler`: the expiry scheduler; `jobs`: the job
    runner), with the outbox relay and a health server."""
    from consumers.health import HealthServer
    from phoenix_coupons.bootstrap import Container

    container = Container(settings)
    await container.start()
    runner = container.scheduler if part == "scheduler" else container.job_runner
    runner.start()
    health = HealthServer(
        host or settings.api_host, port or settings.worker_port, lambda: runner.running
    )
    await health.start()
    try:
        await _until_stopped()
        return 0
    finally:
        await health.stop()
        await container.stop()


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    given = Settings()
    settings = load_services_env(given)
    try:
        if args.command in ("run", "api"):
            configure_logging(settings.log_level)
            return _serve(settings, args.host, args.port, with_worker=args.command == "run")
        if args.command == "worker":
            configure_logging(settings.log_level)
            return asyncio.run(_worker(settings, args.host, args.port))
        if args.command in ("scheduler", "jobs"):
            configure_logging(settings.log_level)
            return asyncio.run(_alone(settings, args.host, args.port, args.command))
        configure_logging(settings.log_level, sys.stderr)
        if args.command == "codes":
            return _codes(settings, args)
        if args.command == "migrate":
            return asyncio.run(_migrate(settings, args.recount, given.mongodb_uri is not None))
        return asyncio.run(_api_key(settings, args, given.mongodb_uri is not None))
    except (ConfigurationError, ValidationFailed, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MongoUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
