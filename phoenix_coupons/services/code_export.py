"""A definition's codes exported as CSV or JSON Lines, streamed in batches: memory stays
that of one batch whatever the number of codes.

Order: the definition's list key (`by_definition`, list_keys.py), i.e. newest issued first,
then coupon id; each batch is one range read after the previous batch's last key, so codes
issued while an export runs may be left out, but none is written twice.

`uses` and `last_redeemed_at` are the kept counts of the usage group the code's redemptions
count against (`uses:<group>` in `counters`), read once per batch by `_id`: a code owned by
a user under a `per_user` limit, the owner's uses of the definition; an unassigned code,
its own uses (by anyone); any other code under a `global` limit, the definition's uses; a
shared code under `per_user`, or any code of an `unlimited` definition, none kept
(empty)."""

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from phoenix_coupons.domain.models import Coupon
from phoenix_coupons.domain.redemption import code_group, usage_group
from phoenix_coupons.services.definitions import definition_not_found
from phoenix_coupons.services.ports import (
    CouponRepo,
    DefinitionRepo,
    GroupUsage,
    Page,
    UsageCounts,
)
from schemas.coupons import CouponDefinition

ExportFormat = Literal["csv", "jsonl"]
FIELDS = (
    "code",
    "kind",
    "user_id",
    "status",
    "starts_at",
    "expires_at",
    "uses",
    "last_redeemed_at",
    "metadata",
)
MEDIA_TYPES: dict[ExportFormat, str] = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
}
BATCH = 1000


def usage_key(defn: CouponDefinition, coupon: Coupon) -> str | None:
    """The usage group whose kept count is this code's `uses`; None when none is kept for
    it (see the module's docstring)."""
    own = code_group(coupon, defn)
    if own is not None:  # an unassigned code: its own uses
        return own.key
    limit = defn.config.usage_limit.limit_type
    if limit == "global" or (limit == "per_user" and coupon.user_id is not None):
        return usage_group(defn, coupon.user_id or "").key
    return None


def timestamp(at: datetime | None) -> str | None:
    """ISO 8601 in UTC with `Z`, as the API's JSON bodies write times."""
    if at is None:
        return None
    if at.tzinfo is None:  # stored times are UTC
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def row(coupon: Coupon, usage: GroupUsage | None) -> dict[str, Any]:
    return {
        "code": coupon.code,
        "kind": coupon.kind,
        "user_id": coupon.user_id,
        "status": coupon.status,
        "starts_at": timestamp(coupon.starts_at),
        "expires_at": timestamp(coupon.expires_at),
        "uses": None if usage is None else usage.uses,
        "last_redeemed_at": None if usage is None else timestamp(usage.last_redeemed_at),
        "metadata": coupon.metadata,
    }


# One encoder for every row: `json.dumps` with `separators` builds a new encoder on each
# call (about 8 us a row, half of a CSV batch's encoding).
_to_json = json.JSONEncoder(separators=(",", ":")).encode


def csv_header() -> str:
    out = io.StringIO()
    csv.writer(out).writerow(FIELDS)
    return out.getvalue()


def csv_rows(rows: Sequence[dict[str, Any]]) -> str:
    """RFC 4180 (the standard library's `csv`); empty for null; metadata as JSON text."""
    out = io.StringIO()
    writer = csv.writer(out)
    for r in rows:
        meta = r["metadata"]
        writer.writerow(
            [
                *("" if r[f] is None else r[f] for f in FIELDS[:-1]),
                "" if meta is None else _to_json(meta),
            ]
        )
    return out.getvalue()


def jsonl_rows(rows: Sequence[dict[str, Any]]) -> str:
    return "".join(_to_json(r) + "\n" for r in rows)


@dataclass(frozen=True)
class Export:
    """An export under way: its first batch is read (so an unknown definition or MongoDB out
    of reach is an error answer, not a cut stream); `chunks` yields the body."""

    filename: str
    media_type: str
    total: int  # the definition's kept count of codes when the export began
    chunks: AsyncIterator[bytes]


class CodeExport:
    def __init__(
        self,
        coupons: CouponRepo,
        definitions: DefinitionRepo,
        usage: UsageCounts,
        batch: int = BATCH,
    ) -> None:
        self._coupons = coupons
        self._definitions = definitions
        self._usage = usage
        self._batch = batch

    async def open(self, tenant_id: str, definition_id: str, fmt: ExportFormat) -> Export:
        defn = await self._definitions.get(tenant_id, definition_id)
        if defn is None:
            raise definition_not_found(definition_id)
        first = await self._page(defn, None)
        return Export(
            filename=f"{definition_id}-codes.{fmt}",
            media_type=MEDIA_TYPES[fmt],
            total=first.total,
            chunks=self._chunks(defn, first, fmt),
        )

    async def _page(self, defn: CouponDefinition, after: str | None) -> Page[Coupon]:
        return await self._coupons.definition_codes(
            defn.tenant_id, defn.id, None, self._batch, 0, after
        )

    async def _chunks(
        self, defn: CouponDefinition, page: Page[Coupon], fmt: ExportFormat
    ) -> AsyncIterator[bytes]:
        if fmt == "csv":
            yield csv_header().encode()
        encode = csv_rows if fmt == "csv" else jsonl_rows
        while True:
            # The next batch is read while this one's uses are read, encoded and sent.
            after = page.next_after
            ahead = None if after is None else asyncio.ensure_future(self._page(defn, after))
            try:
                if page.items:
                    yield encode(await self._rows(defn, page.items)).encode()
            except BaseException:  # the client went away, or the read failed
                if ahead is not None:
                    ahead.cancel()
                raise
            if ahead is None:
                return
            page = await ahead

    async def _rows(self, defn: CouponDefinition, coupons: list[Coupon]) -> list[dict[str, Any]]:
        keys = {c.id: usage_key(defn, c) for c in coupons}
        used = await self._usage.usage(sorted({k for k in keys.values() if k is not None}))
        return [row(c, used.get(k) if (k := keys[c.id]) else None) for c in coupons]
