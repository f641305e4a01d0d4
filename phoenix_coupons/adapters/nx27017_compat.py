"""Where nx-27017 (the embedded MongoDB of tests and `make run`; never production) differs
from MongoDB in what this service uses, and the one workaround for each. The rest of the code
reads as written for MongoDB; each workaround here does on MongoDB exactly what the plain form
would (tests/integration/test_nx27017_compat.py runs them on the server at hand: nx-27017 by
default, MongoDB with PHOENIX_TEST_SERVERS=containers).

Checked against nx-27017 0.8.1:
- A datetime written by a top-level `$set` is stored as a string (inserted ones, and ones in
  sub-documents, stay datetimes): `aware()` reads both.
- So a range query never matches a datetime that `$set` wrote: timestamps that queries
  compare and updates write (leases, windows) are integers, `epoch_ms()`. (Inserted
  datetimes compare to the millisecond in 0.8.1; earlier versions compared to the second.)
- A range over inserted datetimes matches, but scans the collection even where a
  single-field index serves it (`explain` names the index all the same): timestamps that
  queries compare are integers even when only inserts write them (the code claims'
  `unconfirmed`).
- `$or: [{f: None}, ...]` matches a bare None only against a missing field: `free_lease()`
  says `{"$eq": None}`.
- `{f: {"$ne": v}}` does not match a document without `f` (MongoDB's does): a field a
  `$ne` filters on is written with its document (the issuance budget's `exhausted`).
- `update_many` with an `$or` applies a branch without the filter's other conditions:
  `update_many_or()` runs one update per branch.
- An upsert by `replace_one` ignores the filter's `_id` (each call inserts a new ObjectId
  document): `replace_by_id()` puts the `_id` in the replacement too.
- A compound index whose keys include `_id` is created, but every insert into the collection
  then fails ("JSON path error near '_id'"); and every key is reported ascending: indexes go
  without their `_id` tie-breaker there, and are compared without directions
  (`as_served()`, `as_reported()`).
- A compound index is never used, not even for equality on its first key (a scan): one that
  is not unique is served by its first key alone there (`as_served()`).
- An `_id` range scans the collection (17 -> 450 ms at 1,000 -> 50,000 documents; with a
  hint, `$gte`, an anchored `$regex`, or beside an equality on an indexed field too), while
  an equality on a single-field index stays flat (2 ms at 50,000): a code's timeline (one
  `_id` range) is read there by its code's equality on an index of that server alone, and
  ranged, sorted and paged in the adapter (`STAND_IN_INDEXES`, `id_range()`).
- `{f: {"$in": [...]}}` as a query's only indexed condition scans the collection even where
  a single-field index on `f` serves an equality (`explain`: SCAN; 10 values 7 -> 349 ms at
  1,000 -> 50,000 documents, one equality 1.5 -> 3.3 ms), and so does an `$or` of
  equalities; an `_id` `$in` is served by the `_id` index, and an `$in` beside an indexed
  range filters what the range found: `find_in()` asks one equality per value there.
- `collMod` of an index's TTL answers ok and changes nothing, while `createIndexes` changes
  it in place (MongoDB refuses that with IndexOptionsConflict): `set_ttl()`.
- A boolean written by `$set` is stored as 1 or 0, which queries for true and false still
  match: fields that `$set` writes are read by truth, never compared with `is True`.
Stored or answered wrong without an error there (checked on 0.8.1), so not used at all:
`$push` of a sub-document (stored as a JSON string), arrayFilters (ignored), dotted-path
projections (answered as a flat "a.b" key), UUID binaries (read back as bytes), partial and
sparse index options (dropped), uniqueness of missing values (not enforced). Refused or not
implemented there: Decimal128, `$not`, update pipelines. So ids are strings and money is in
integer minor units.
No longer needed with 0.8.1, removed: flat copies of nested definition fields for indexed
look-ups (nested paths are queried and indexed now).
"""

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, overload

from pymongo import IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from phoenix_coupons.adapters.mongo_schema import Collection, Index, Keys

Doc = dict[str, Any]
PROCESS = "nx_27017"  # `buildInfo.process` of nx-27017 (mongod has none)


def is_nx27017(build_info: Mapping[str, Any]) -> bool:
    return build_info.get("process") == PROCESS


@overload
def aware(value: datetime | str) -> datetime: ...
@overload
def aware(value: None) -> None: ...
@overload
def aware(value: datetime | str | None) -> datetime | None: ...
def aware(value: datetime | str | None) -> datetime | None:
    """A stored timestamp as an aware UTC datetime. MongoDB answers datetimes (aware: the
    client is `tz_aware`), which pass unchanged; nx-27017 answers a `$set` one as its ISO
    string."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def epoch_ms(value: datetime) -> int:
    """A timestamp that queries compare, as integer milliseconds: exact on both servers
    (MongoDB's datetimes are milliseconds too)."""
    return int(value.timestamp() * 1000)


def free_lease(field: str, now_ms: int) -> Doc:
    """Rows whose lease `field` is free at `now_ms`: never taken (null or missing) or run out.
    On MongoDB `{"$eq": None}` and a bare None match the same: null or missing."""
    return {"$or": [{field: {"$eq": None}}, {field: {"$lt": now_ms}}]}


async def update_many_or(collection: AsyncCollection[Doc], query: Doc, update: Doc) -> None:
    """`update_many(query, update)` for a query with a top-level `$or`, one update per branch.
    The same rows get the same update on MongoDB, as long as `update` is idempotent (a `$set`
    of values): a row that two branches match is set twice, each time atomically with the
    query that matched it."""
    branches: list[Doc] = query["$or"]
    rest = {k: v for k, v in query.items() if k != "$or"}
    for branch in branches:
        if set(branch) & set(rest):
            raise ValueError(f"branch {branch} constrains a field of the query's others")
        await collection.update_many({**rest, **branch}, update)


async def replace_by_id(collection: AsyncCollection[Doc], doc_id: str, doc: Doc) -> None:
    """Insert or replace the document `doc_id`. MongoDB accepts a replacement that carries the
    filter's `_id` (it is the same value) and upserts with it either way."""
    await collection.replace_one({"_id": doc_id}, {"_id": doc_id, **doc}, upsert=True)


async def find_in(
    collection: AsyncCollection[Doc],
    field: str,
    values: Iterable[Any],
    query: Doc,
    projection: Doc | None,
    nx27017: bool,
) -> list[Doc]:
    """`find({field: {"$in": values}, **query}, projection)` through the index on `field`,
    a field of one scalar per document (an equality on nx-27017 does not match an array's
    elements). MongoDB: that query, one round trip of index seeks. nx-27017 scans for an
    `$in` (and an `$or`): one equality query per distinct value, each served by the index
    (sequential: the server answers one command at a time per database anyway); each
    document matches one value, so none is found twice. Order unspecified."""
    wanted = list(dict.fromkeys(values))
    if not nx27017:
        return await collection.find({field: {"$in": wanted}, **query}, projection).to_list(None)
    found: list[Doc] = []
    for value in wanted:
        found += await collection.find({field: value, **query}, projection).to_list(None)
    return found


# Indexes nx-27017 alone gets: the equality `id_range` reads by, per collection.
STAND_IN_INDEXES: dict[str, tuple[Index, ...]] = {
    "code_history": (Index((("code_norm", 1),)),),
}


async def id_range(
    collection: AsyncCollection[Doc],
    above: str,
    below: str,
    skip: int,
    limit: int,
    within: tuple[str, str],
    projection: Doc | None = None,
) -> list[Doc]:
    """The documents with `above < _id < below`, by `_id`, `skip` then `limit` of them, all
    of which have `within` (field, value): on MongoDB the `_id` range alone; on nx-27017 the
    documents with that value (a few: one code's steps) ranged here."""
    field, value = within
    docs = await collection.find({field: value}, projection).to_list(None)
    inside = sorted((d for d in docs if above < d["_id"] < below), key=lambda d: d["_id"])
    return inside[skip : skip + limit]


def as_served(collection: Collection) -> Collection:
    """`collection` with its indexes as nx-27017 can build, report and use them: no `_id`
    tie-breaker, every key ascending, and a compound index that is not unique served by
    its first key alone (nx-27017 never uses a compound index: equality on its first key
    scans the collection, 2 -> 84 ms at 1,000 -> 50,000 redemptions for a coupon's; on a
    single-field index it stays flat, the rest of the filter and the sort done on the
    documents it matches). The compound forms are dropped where found. MongoDB keeps the
    declared indexes (the `_id` lets it sort a page from the index, without a SORT stage)."""

    def served(keys: Keys) -> Keys:
        fields = [(name, 1) for name, _ in keys]
        if len(fields) > 1 and fields[-1][0] == "_id":
            fields.pop()
        return tuple(fields)

    def usable(index: Index) -> Index:
        keys = served(index.keys)
        return replace(index, keys=keys if index.unique else keys[:1])

    indexes: dict[Keys, Index] = {}
    for index in map(usable, collection.indexes):
        indexes.setdefault(index.keys, index)  # two may share a first key: one serves both
    compound = tuple(
        served(index.keys)
        for index in collection.indexes
        if not index.unique and len(served(index.keys)) > 1
    )
    retired = tuple(served(keys) for keys in collection.retired)
    for extra in STAND_IN_INDEXES.get(collection.name, ()):
        indexes.setdefault(extra.keys, extra)
    return replace(
        collection,
        indexes=tuple(indexes.values()),
        retired=retired + tuple(keys for keys in compound if keys not in retired),
    )


def as_reported(existing: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """`index_information()` with every key ascending, as `as_served` declares them."""
    return {
        name: {**info, "key": [(field, 1) for field, _ in info["key"]]}
        for name, info in existing.items()
    }


async def set_ttl(
    db: AsyncDatabase[Doc], name: str, index: Index, model: IndexModel, nx27017: bool
) -> None:
    """Change the TTL of `index`, which exists with another. MongoDB: `collMod` (it refuses a
    `createIndexes` of the same keys with other options); nx-27017 answers `collMod` with ok
    and changes nothing, but changes the TTL in place on `createIndexes`."""
    if nx27017:
        await db[name].create_indexes([model])
        return
    await db.command(
        {
            "collMod": name,
            "index": {
                "keyPattern": dict(index.keys),
                "expireAfterSeconds": index.expire_after_seconds,
            },
        }
    )
