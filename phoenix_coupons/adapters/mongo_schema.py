"""The collections and their indexes, declared as data beside each collection, and the plan
that brings a database's indexes to what is declared.

Each query that sorts has an index whose keys are its equality fields, then its sort keys in
the sort's direction (a `status $in` is one index scan per status, merged in order), so no
page is sorted in memory."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pymongo.errors import OperationFailure

from phoenix_coupons.domain.errors import PhoenixError

Keys = tuple[tuple[str, int | str], ...]
ASC, DESC = 1, -1

# Codes a server answers when another process changed the same indexes between our read and
# our write (src/mongo/base/error_codes.yml): read the indexes again and plan again.
NAMESPACE_NOT_FOUND = 26  # the collection went (or never was) when collMod or a drop ran
INDEX_NOT_FOUND = 27  # another process dropped it first, or collMod ran before its create
INDEX_ALREADY_EXISTS = 68
INDEX_OPTIONS_CONFLICT = 85  # same key or name, other options (e.g. another TTL)
INDEX_KEY_SPECS_CONFLICT = 86  # same name, other keys
INDEX_BUILD_ABORTED = 276  # a concurrent drop aborted the build
INDEX_BUILD_ALREADY_IN_PROGRESS = 285
CONCURRENT_CHANGE_CODES = frozenset(
    {
        NAMESPACE_NOT_FOUND,
        INDEX_NOT_FOUND,
        INDEX_ALREADY_EXISTS,
        INDEX_OPTIONS_CONFLICT,
        INDEX_KEY_SPECS_CONFLICT,
        INDEX_BUILD_ABORTED,
        INDEX_BUILD_ALREADY_IN_PROGRESS,
    }
)


def concurrent_change(exc: OperationFailure) -> bool:
    """Whether an index command failed because the indexes changed under it (then plan
    again) rather than because the request is wrong."""
    return exc.code in CONCURRENT_CHANGE_CODES


@dataclass(frozen=True)
class Index:
    keys: Keys
    unique: bool = False
    expire_after_seconds: int | None = None
    # Only documents holding the field are indexed (MongoDB); nx-27017 drops the option.
    sparse: bool = False


HASHED_ID: Keys = (("_id", "hashed"),)


@dataclass(frozen=True)
class Collection:
    name: str
    indexes: tuple[Index, ...] = ()
    # Key patterns of indexes older versions kept: dropped where found, matched by key (servers
    # name indexes their own way). A declared index is never dropped.
    retired: tuple[Keys, ...] = ()
    # Its shard key on a sharded cluster (`shard_plan.py` prints the `sh.shardCollection`
    # commands; docs/scaling.md says why each). A cluster enforces a unique index only when it
    # starts with the shard key, and `_id` uniqueness across shards only when `_id` is it.
    shard_key: Keys = HASHED_ID
    # Whether the service relies on `_id` being unique across the collection (a duplicate
    # insert means "taken", upserts by `_id`): then `_id` must lead the shard key. True unless
    # a collection says otherwise, so a new one sharded on another key must decide.
    id_unique: bool = True


# `_id` = the key's hash (the `X-API-Key` look-up); `key_id`, the key's public id (JWT
# `sub_id`, `api-key revoke ID`), is a uuid4: unique by construction, so its index need not
# be (a sharded cluster could not enforce it). Small: one document per key. (Not `id`:
# nx-27017 0.8.1 answers ok to an index on a field named `id` and builds none.)
API_KEYS = Collection("api_keys", (Index((("key_id", ASC),)),), retired=((("key_hash", ASC),),))

REWARDS = Collection(
    "reward_items",
    (Index((("by_tenant", ASC),)),),  # a tenant's list: "<tenant>|<newest first>|<_id>"
    retired=(
        (("tenant_id", ASC), ("created_at", DESC)),
        (("tenant_id", ASC), ("created_at", DESC), ("_id", ASC)),
    ),
)

DEFINITIONS = Collection(
    "coupon_definitions",
    (
        # The lists by list keys (list_keys.py), one range per status: a tenant's
        # ("<tenant>|<status>|<newest first>|<_id>") and all tenants' ("<status>|...").
        Index((("by_tenant", ASC),)),
        Index((("by_status", ASC),)),
        Index((("config.reward_item_id", ASC), ("status", ASC))),
        Index((("config.auto_generate.trigger", ASC), ("status", ASC))),  # definition_cache.py
    ),
    retired=(
        (("tenant_id", ASC), ("status", ASC)),
        (("tenant_id", ASC), ("status", ASC), ("created_at", DESC), ("_id", ASC)),
        (("status", ASC), ("created_at", DESC), ("_id", ASC)),
        # On the flat copies of config fields that nx-27017 0.8 no longer needs.
        (("reward_item_id", ASC), ("status", ASC)),
        (("auto_trigger", ASC), ("status", ASC)),
    ),
)

# The code registry (code_registry.py): `_id = "<tenant_id>:<code_norm>"`, so codes are
# unique per tenant by `_id`. Claims not confirmed yet carry `unconfirmed` (few): the sweep's.
CODES = Collection("codes", (Index((("unconfirmed", ASC),), sparse=True),))
# The open batches of claims (code_registry.py): one document per batch of coupons being
# stored, deleted once they are; the sweep reads the old ones (`at`, epoch ms). Small.
CLAIM_BATCHES = Collection("claim_batches", (Index((("at", ASC),)),))

COUPONS = Collection(
    "coupons",
    (
        # List keys (list_keys.py), one single-field index each: a definition's codes
        # ("<tenant>|<definition>|<newest first>|<_id>") and a wallet ("<tenant>|<user
        # digest>|..."; also a definition's codes of one user, filtered among the few a user
        # holds, and the look-up of a dead attempt's coupons by their event).
        Index((("by_definition", ASC),)),
        Index((("by_user", ASC),)),
        # The expiry scheduler's query: coupons whose next step is due, oldest first
        # (expiry_schedule.py; epoch ms, only on user coupons with steps left).
        Index((("expiry_due", ASC),), sparse=True),
    ),
    retired=(
        # Codes are unique per tenant by the registry's `_id` (CODES); capacity is a kept count.
        (("tenant_id", ASC), ("code_norm", ASC)),
        (("tenant_id", ASC), ("code_space", ASC)),
        # The lists' compound indexes, replaced by the list keys.
        (("tenant_id", ASC), ("definition_id", ASC), ("issued_at", DESC), ("_id", ASC)),
        (("tenant_id", ASC), ("user_id", ASC), ("issued_at", DESC), ("_id", ASC)),
        # At most one coupon per issue key: the `_id` is derived from it (issue_keys.py).
        (("issue_key", ASC),),
        (("trigger_event_id", ASC),),
        # Prefixes of the two above, which serve their queries.
        (("definition_id", ASC), ("user_id", ASC)),
        (("tenant_id", ASC), ("user_id", ASC)),
        # The coupon was its own outbox entry: events wait in `outbox` now.
        (("publish_pending", ASC), ("issued_at", ASC)),
    ),
)

REDEMPTIONS = Collection(
    "redemptions",
    (Index((("coupon_id", ASC), ("redeemed_at", DESC))),),
    retired=(
        # Slots are documents of their own (`redemption_slots`), counted in `counters`.
        (("slot", ASC),),
        (("group", ASC), ("state", ASC)),
        # The redemption was its own outbox entry: events wait in `outbox` now.
        (("publish_pending", ASC), ("redeemed_at", ASC)),
        (("rollback_publish_pending", ASC), ("redeemed_at", ASC)),
    ),
)
# One document per held slot of a usage group (`_id` = the slot): at most one redemption per
# slot, so limits are exact. `group`: a group's held slots (used when its hint is past the
# limit); `unconfirmed`: slots whose redemption may never have come (the sweep's).
REDEMPTION_SLOTS = Collection(
    "redemption_slots", (Index((("group", ASC),)), Index((("unconfirmed", ASC),)))
)
# Holds of uses (reservation_repo.py), `_id` = the reservation id. `open_until` (epoch ms):
# set while the hold is open (its end) or its settling unfinished, so the sweep's query of
# holds due reads only those.
RESERVATIONS = Collection("reservations", (Index((("open_until", ASC),)),))
# Events waiting to be published (outbox.py): pending records only, deleted once sent, so the
# collection stays small. `state`: the relay's `ready` query and the sweep's `prepared` one.
OUTBOX = Collection("outbox", (Index((("state", ASC),)),))
# Each code's timeline (code_history.py): `_id` "<tenant>:<code_norm>|<epoch ms>|...", read
# as one `_id` range. Ranged on `_id`, so a code's steps stay on one shard.
# A code's steps: one `_id` range (one shard of a cluster). nx-27017 scans any `_id` range:
# there they are read by `code_norm`, indexed there alone (nx27017_compat.py).
CODE_HISTORY = Collection("code_history", shard_key=(("_id", ASC),))

# Generation jobs (job_repo.py), `_id` the job id: `queue` (epoch ms; only while queued or
# running) the runners' claim, oldest first; `by_definition` a definition's list
# ("<tenant>|<definition>|<newest first>|<_id>").
GENERATION_JOBS = Collection(
    "generation_jobs", (Index((("queue", ASC),)), Index((("by_definition", ASC),)))
)
# A job's rows in chunks, `_id` "<job>:<request hash>:<chunk>", each read by `_id`.
GENERATION_JOB_ROWS = Collection("generation_job_rows")
USAGE_HINTS = Collection("usage_hints")
# Kept counts, read and written by `_id` (counters.py).
COUNTERS = Collection("counters")
# `phoenix-coupons migrate`: each step's progress, by step name (migrations/).
MIGRATIONS = Collection("migrations")
ANNOUNCED_OFFSETS = Collection("announced_offsets")
# Failed code look-ups per API key, tenant and window (lookup_limiter.py): read and written by
# `_id`; windows that are over go with the TTL monitor.
LOOKUP_FAILURES = Collection(
    "lookup_failures", (Index((("expire_at", ASC),), expire_after_seconds=0),)
)
# Outbox records that can never be sent, set aside for operators (outbox_relay.py).
# `entry_id`: whether an entry that another must follow is dead.
OUTBOX_DEAD = Collection("outbox_dead", (Index((("entry_id", ASC),)),))
IDEMPOTENCY = "idempotency_keys"


def idempotency(ttl_seconds: int) -> Collection:
    """`Idempotency-Key` records expire `ttl_seconds` after they were made (a setting)."""
    return Collection(
        IDEMPOTENCY, (Index((("created_at", ASC),), expire_after_seconds=ttl_seconds),)
    )


def collections(idempotency_ttl_seconds: int) -> tuple[Collection, ...]:
    return (
        API_KEYS,
        REWARDS,
        DEFINITIONS,
        CODES,
        CLAIM_BATCHES,
        COUPONS,
        REDEMPTIONS,
        REDEMPTION_SLOTS,
        RESERVATIONS,
        OUTBOX,
        CODE_HISTORY,
        GENERATION_JOBS,
        GENERATION_JOB_ROWS,
        USAGE_HINTS,
        COUNTERS,
        MIGRATIONS,
        ANNOUNCED_OFFSETS,
        LOOKUP_FAILURES,
        OUTBOX_DEAD,
        idempotency(idempotency_ttl_seconds),
    )


class IndexConflict(PhoenixError):
    """An index has a declared key but another uniqueness or no TTL: changing it is no
    start-up's decision (a unique index may not build over the data)."""

    code = "index_conflict"


@dataclass
class IndexPlan:
    drop: list[str] = field(default_factory=list)  # names of retired indexes found
    set_ttl: list[Index] = field(default_factory=list)  # present with another TTL
    create: list[Index] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return not (self.drop or self.set_ttl or self.create)


def keys_of(info: Mapping[str, Any]) -> Keys:
    """An index's key pattern from `index_information()` (directions as ints: a shell may
    have stored 1.0)."""
    return tuple(
        (str(name), int(way) if isinstance(way, int | float) else str(way))
        for name, way in info["key"]
    )


def plan(collection: Collection, existing: Mapping[str, Mapping[str, Any]]) -> IndexPlan:
    """What to change so that `existing` (`index_information()`: name -> key and options)
    holds each declared index and no retired one."""
    declared = {index.keys: index for index in collection.indexes}
    todo = IndexPlan()
    present: set[Keys] = set()
    for name, info in existing.items():
        keys = keys_of(info)
        want = declared.get(keys)
        if want is None:
            if keys in collection.retired:
                todo.drop.append(name)
            continue
        present.add(keys)
        ttl = info.get("expireAfterSeconds")
        ttl = None if ttl is None else int(ttl)
        if bool(info.get("unique")) != want.unique or (
            ttl is not None and want.expire_after_seconds is None
        ):
            raise IndexConflict(
                f"index {name} of {collection.name} on {dict(keys)} has other options than "
                f"declared (unique={want.unique}, expireAfterSeconds="
                f"{want.expire_after_seconds}): drop it and start again"
            )
        if ttl != want.expire_after_seconds:
            todo.set_ttl.append(want)
    todo.create = [index for index in collection.indexes if index.keys not in present]
    return todo
