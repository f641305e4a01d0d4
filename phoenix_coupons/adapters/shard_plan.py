"""The sharding plan, from the shard keys declared in `mongo_schema.py`, and its rule.

The rule (checked by tests/unit/test_shard_keys.py, and here before a plan is printed): a
sharded cluster enforces a unique index only when its keys start with the shard key, and
`_id` uniqueness across shards only when `_id` leads the shard key. So every unique index of
a collection starts with that collection's shard key, and a collection relying on `_id`
uniqueness (`id_unique`) has `_id` first in its shard key.

`python -m phoenix_coupons.adapters.shard_plan` prints the mongosh commands that shard every
collection as declared (docker compose's `sharded` profile runs them through `mongos`), or
names the declarations that break the rule and exits 1."""

import argparse
import json
import sys
from collections.abc import Iterable, Sequence

from phoenix_coupons.adapters.mongo_schema import Collection, Keys, collections
from phoenix_coupons.settings import Settings


def _fields(keys: Keys) -> list[str]:
    return [name for name, _ in keys]


def starts_with(keys: Keys, shard_key: Keys) -> bool:
    """Whether an index on `keys` has the shard key as its prefix. Fields, not directions:
    a hashed shard key is prefixed by the same field ascending (`{_id: 1, x: 1}`)."""
    return _fields(keys)[: len(shard_key)] == _fields(shard_key)


def violations(collection: Collection) -> list[str]:
    """What a sharded cluster could not enforce in `collection`'s declaration."""
    found = [
        f"{collection.name}: unique index {dict(index.keys)} does not start with the shard "
        f"key {dict(collection.shard_key)}: a sharded cluster cannot enforce it"
        for index in collection.indexes
        if index.unique and not starts_with(index.keys, collection.shard_key)
    ]
    if collection.id_unique and _fields(collection.shard_key)[:1] != ["_id"]:
        found.append(
            f"{collection.name}: relies on `_id` uniqueness but is sharded on "
            f"{dict(collection.shard_key)}: `_id` would be unique per shard only"
        )
    return found


def script(database: str, declared: Iterable[Collection]) -> str:
    """mongosh commands sharding each collection of `database` on its declared key. Both are
    no-ops once done (the same key again), so the script can run on every start."""
    lines = [f"sh.enableSharding({json.dumps(database)});"]
    lines += [
        f"sh.shardCollection({json.dumps(f'{database}.{c.name}')}, "
        f"{json.dumps(dict(c.shard_key))});"
        for c in declared
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m phoenix_coupons.adapters.shard_plan", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--database", help="database name (default: PHOENIX_MONGODB_DATABASE or its default)"
    )
    args = parser.parse_args(argv)
    settings = Settings()
    declared = collections(settings.idempotency_ttl_seconds)
    wrong = [v for c in declared for v in violations(c)]
    if wrong:
        print(
            "\n".join(["refusing to print a plan the cluster cannot enforce:", *wrong]),
            file=sys.stderr,
        )
        return 1
    print(script(args.database or settings.mongodb_database, declared), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
