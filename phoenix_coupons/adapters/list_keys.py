"""List keys: each list page reads ONE single-field index whose value is a composite string,
`<prefix parts>|<newest-first time>|<_id>`, range-scanned from the list's prefix (or from the
`after` cursor) and sorted on that same field. On MongoDB it costs what a compound index
did; on the embedded nx-27017, which never uses compound indexes, it keeps a page flat.

Parts are joined with `|`, which no validated part holds (`schemas/bounds.py`: tenant ids
and codes are `[A-Za-z0-9_.-]`); a user id may hold anything, so a key carries a digest of
it. The time part counts down (newest first in ascending order), so ties keep `_id`
ascending, the order the lists had before."""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pymongo.asynchronous.collection import AsyncCollection

from phoenix_coupons.adapters.mongo import Doc

SEP = "|"
END = "\x7f"  # above every character a key holds: the end of a prefix's range
_MAX_MICROS = 10**17  # beyond year 5000 in microseconds since the epoch
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def user_digest(user_id: str) -> str:
    """Fixed length, no separator: a user id may be any string up to 255 characters."""
    return hashlib.sha256(user_id.encode()).hexdigest()[:32]


def newest_first(at: datetime) -> str:
    """A fixed-width string that sorts newer times first."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    micros = (at - _EPOCH) // timedelta(microseconds=1)
    return f"{_MAX_MICROS - micros:018d}"


def key(*parts: str) -> str:
    return SEP.join(parts)


def tail(at: datetime, doc_id: str) -> str:
    """What follows a list's prefix: the order within it, and the cursor `after` names."""
    return key(newest_first(at), doc_id)


@dataclass(frozen=True)
class Page:
    docs: list[Doc]
    next_after: str | None  # the tail of the last document when more may follow


async def page(
    col: AsyncCollection[Doc],
    field: str,
    prefix: str,
    limit: int,
    offset: int,
    after: str | None,
    extra: Doc | None = None,
) -> Page:
    """Documents whose `field` starts with `prefix + SEP`, in key order, after the cursor
    `after` (a tail) or else skipping `offset`; `extra`: a filter on top (bounded lists)."""
    start = prefix + SEP
    low: Doc = {"$gt": start + after} if after else {"$gte": start}
    query: Doc = {field: {**low, "$lt": start + END}, **(extra or {})}
    cursor = col.find(query).sort(field, 1)
    if not after and offset:
        cursor = cursor.skip(offset)
    docs = [d async for d in cursor.limit(limit + 1)]
    more = len(docs) > limit
    docs = docs[:limit]
    return Page(docs, docs[-1][field][len(start) :] if more and docs else None)


async def merged_page(
    col: AsyncCollection[Doc],
    ranges: Sequence[tuple[str, str]],
    limit: int,
    offset: int,
    after: str | None,
) -> Page:
    """One page over several lists ((field, prefix) each, e.g. one per status) in tail order:
    each list gives its first `offset + limit` after the cursor, merged."""
    wanted = limit if after else offset + limit
    tagged: list[tuple[str, Doc]] = []
    more = False
    for field, prefix in ranges:
        part = await page(col, field, prefix, wanted, 0, after)
        more = more or part.next_after is not None
        tagged += [(d[field][len(prefix) + 1 :], d) for d in part.docs]
    tagged.sort(key=lambda t: t[0])
    more = more or len(tagged) > wanted
    window = tagged[wanted - limit : wanted]
    return Page([d for _, d in window], window[-1][0] if more and window else None)
