"""MongoDB connection and indexes (PyMongo's async API). Where the embedded nx-27017 of
tests and `make run` differs from MongoDB, the workaround is in nx27017_compat.py."""

from collections.abc import Mapping
from typing import Any

import pymongo
import structlog
from pymongo import AsyncMongoClient, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    OperationFailure,
    PyMongoError,
    WriteConcernError,
    WTimeoutError,
)

from phoenix_coupons.adapters import nx27017_compat
from phoenix_coupons.adapters.mongo_schema import (
    ANNOUNCED_OFFSETS,
    API_KEYS,
    COUPONS,
    DEFINITIONS,
    IDEMPOTENCY,
    REDEMPTIONS,
    REWARDS,
    USAGE_HINTS,
    Collection,
    Index,
    IndexPlan,
    collections,
    concurrent_change,
    plan,
)
from phoenix_coupons.domain.errors import PhoenixError

Doc = dict[str, Any]
log = structlog.get_logger(__name__)

# Rounds of read-plan-apply per collection: another process changing the same indexes at
# the same moment costs one more round; only a lasting conflict uses them all.
CONVERGE_ROUNDS = 5
# An index build over a large collection takes minutes, past the operation timeout (which is
# for requests and batches): index commands get this limit instead.
INDEX_BUILD_TIMEOUT_S = 3600.0


class IndexesNotConverged(PhoenixError):
    """Another process keeps changing the same indexes, or they conflict."""

    code = "indexes_not_converged"


def raise_unacknowledged(result: Mapping[str, Any]) -> None:
    """Raise when a bulk write's result carries write concern errors, as PyMongo does for a
    single write: its writes may not survive a failover (rolled back), so none of them counts
    as stored, whatever its `writeErrors` say. The caller's retry is idempotent."""
    errors = result.get("writeConcernErrors") or []
    if errors:
        error = errors[-1]
        wtimeout = error.get("code") == 50 or (error.get("errInfo") or {}).get("wtimeout")
        kind = WTimeoutError if wtimeout else WriteConcernError
        raise kind(error.get("errmsg", "write concern error"), error.get("code"), dict(result))


def duplicates_only(exc: BulkWriteError, duplicate_key: int = 11000) -> list[int]:
    """The positions a bulk insert refused as duplicates; raises `exc` when anything else went
    wrong, and a write concern error when the rest may not be stored."""
    raise_unacknowledged(exc.details)
    refused = []
    for error in exc.details.get("writeErrors", []):
        if error.get("code") != duplicate_key:
            raise exc
        refused.append(int(error["index"]))
    return refused


def unavailable(exc: BaseException) -> bool:
    """MongoDB could not be reached or did not answer within the operation timeout, or a
    write was not acknowledged by its write concern: the same request may succeed later."""
    if isinstance(exc, ConnectionFailure | WriteConcernError):
        return True  # AutoReconnect, NetworkTimeout, NotPrimaryError, ServerSelectionTimeout
    if not isinstance(exc, PyMongoError):
        return False
    return exc.timeout or any(  # ExecutionTimeout, a timed-out bulk write
        exc.has_error_label(label) for label in ("RetryableWriteError", "TransientTransactionError")
    )


class Mongo:
    def __init__(
        self,
        uri: str,
        database: str,
        idempotency_ttl_seconds: int,
        *,
        timeout_ms: int | None = None,
        connect_timeout_ms: int | None = None,
    ) -> None:
        """`timeout_ms`: the time limit of each operation (PyMongo's `timeoutMS`, which also
        bounds server selection); `connect_timeout_ms`: of opening a connection. None:
        PyMongo's defaults (no operation limit)."""
        options: dict[str, Any] = {}
        if timeout_ms is not None:
            options["timeoutMS"] = timeout_ms
        if connect_timeout_ms is not None:
            options["connectTimeoutMS"] = connect_timeout_ms
        self.client: AsyncMongoClient[Doc] = AsyncMongoClient(
            uri, tz_aware=True, uuidRepresentation="standard", connect=False, **options
        )
        self.db: AsyncDatabase[Doc] = self.client[database]
        self.collections = collections(idempotency_ttl_seconds)
        self._stand_in: bool | None = None

    @property
    def api_keys(self) -> AsyncCollection[Doc]:
        return self.db[API_KEYS.name]

    @property
    def rewards(self) -> AsyncCollection[Doc]:
        return self.db[REWARDS.name]

    @property
    def definitions(self) -> AsyncCollection[Doc]:
        return self.db[DEFINITIONS.name]

    @property
    def coupons(self) -> AsyncCollection[Doc]:
        return self.db[COUPONS.name]

    @property
    def redemptions(self) -> AsyncCollection[Doc]:
        return self.db[REDEMPTIONS.name]

    @property
    def usage_hints(self) -> AsyncCollection[Doc]:
        return self.db[USAGE_HINTS.name]

    @property
    def announced_offsets(self) -> AsyncCollection[Doc]:
        return self.db[ANNOUNCED_OFFSETS.name]

    @property
    def idempotency(self) -> AsyncCollection[Doc]:
        return self.db[IDEMPOTENCY]

    async def ping(self, timeout_s: float | None = None) -> None:
        """Raises unless MongoDB answers, within `timeout_s` when given."""
        if timeout_s is None:
            await self.client.admin.command("ping")
            return
        with pymongo.timeout(timeout_s):
            await self.client.admin.command("ping")

    async def stand_in(self) -> bool:
        """Whether the server is the embedded nx-27017 (tests and `make run`)."""
        if self._stand_in is None:
            info = await self.client.admin.command("buildInfo")
            self._stand_in = nx27017_compat.is_nx27017(info)
        return self._stand_in

    async def ensure_indexes(self) -> None:
        """Bring every collection's indexes to what `mongo_schema` declares. Safe in any number
        of processes at once: what another process did meanwhile is read again, not failed on."""
        for collection in self.collections:
            await self._converge(collection)

    async def index_plan(self, collection: Collection) -> IndexPlan:
        """What `ensure_indexes` would still change in `collection`."""
        existing = await self.db[collection.name].index_information()
        if await self.stand_in():
            return plan(nx27017_compat.as_served(collection), nx27017_compat.as_reported(existing))
        return plan(collection, existing)

    async def _converge(self, collection: Collection) -> None:
        last: OperationFailure | None = None
        for _ in range(CONVERGE_ROUNDS):
            todo = await self.index_plan(collection)
            if todo.done:
                return
            try:
                await self._apply(collection.name, todo)
            except OperationFailure as exc:
                if not concurrent_change(exc):
                    raise
                last = exc
                log.info("indexes_changed_meanwhile", collection=collection.name, code=exc.code)
        raise IndexesNotConverged(
            f"the indexes of {collection.name} keep changing under us or conflict: {last!r}"
        )

    async def _apply(self, name: str, todo: IndexPlan) -> None:
        """New indexes first, so that queries move to them before a retired one goes."""
        col = self.db[name]
        stand_in = await self.stand_in()
        with pymongo.timeout(INDEX_BUILD_TIMEOUT_S):
            if todo.create:
                await col.create_indexes([_model(index) for index in todo.create])
                log.info("indexes_created", collection=name, count=len(todo.create))
            for index in todo.set_ttl:
                await nx27017_compat.set_ttl(self.db, name, index, _model(index), stand_in)
                log.info("index_ttl_set", collection=name, seconds=index.expire_after_seconds)
        for index_name in todo.drop:
            await col.drop_index(index_name)  # by name: servers name indexes their way
            log.info("index_dropped", collection=name, index=index_name)

    async def close(self) -> None:
        await self.client.close()


def _model(index: Index) -> IndexModel:
    options: dict[str, Any] = {"unique": index.unique}
    if index.expire_after_seconds is not None:
        options["expireAfterSeconds"] = index.expire_after_seconds
    if index.sparse:
        options["sparse"] = True
    return IndexModel(list(index.keys), **options)
