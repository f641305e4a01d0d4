"""0302: the time of an unconfirmed code claim (`unconfirmed`, on `codes`) in epoch ms. The
version before it stored a datetime there; the claims sweep now compares integers, which
MongoDB never matches against a datetime (so such a claim would never be swept), and a range
over datetimes scans the collection on nx-27017. Few claims are unconfirmed at any time
(those of a single write in flight, or cut short by a crash): the step walks only those.
Each write sets the integer only where the claim is still unconfirmed: running again, or
after a confirmation, changes nothing."""

from datetime import datetime

from pymongo import UpdateOne

from phoenix_coupons.adapters.code_registry import UNCONFIRMED
from phoenix_coupons.adapters.migrations import BATCH, Db, Progress, Step, batches
from phoenix_coupons.adapters.mongo import Doc
from phoenix_coupons.adapters.mongo_schema import CODES
from phoenix_coupons.adapters.nx27017_compat import aware, epoch_ms

UNCONFIRMED_CLAIMS = {UNCONFIRMED: {"$exists": True}}


def _old(doc: Doc) -> bool:
    """A time stored as a datetime (or, `$set` on nx-27017, as its ISO string)."""
    return isinstance(doc.get(UNCONFIRMED), datetime | str)


async def run(db: Db, progress: Progress) -> None:
    async for batch in batches(db[CODES.name], progress, UNCONFIRMED_CLAIMS, BATCH):
        ops = [
            UpdateOne(
                {"_id": d["_id"], **UNCONFIRMED_CLAIMS},
                {"$set": {UNCONFIRMED: epoch_ms(aware(d[UNCONFIRMED]))}},
            )
            for d in batch
            if _old(d)
        ]
        if ops:
            await db[CODES.name].bulk_write(ops, ordered=False)


async def needed(db: Db) -> bool:
    async for doc in db[CODES.name].find(UNCONFIRMED_CLAIMS, {UNCONFIRMED: 1}):
        if _old(doc):
            return True
    return False


STEP = Step("0302_claim_times", "unconfirmed code claims' time -> epoch ms", run, needed)
