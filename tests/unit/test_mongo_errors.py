"""How MongoDB's failures are taken, on errors built as PyMongo raises them from a replica
set's replies (the embedded server has no replication, so no write concern to miss)."""

from typing import Any

import pytest
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    DuplicateKeyError,
    ExecutionTimeout,
    NetworkTimeout,
    NotPrimaryError,
    OperationFailure,
    ServerSelectionTimeoutError,
    WriteConcernError,
    WTimeoutError,
)

from phoenix_coupons.adapters.mongo import duplicates_only, unavailable

WTIMEOUT = {
    "code": 64,
    "codeName": "WriteConcernTimeout",
    "errmsg": "waiting for replication timed out",
    "errInfo": {"wtimeout": True, "writeConcern": {"w": "majority", "wtimeout": 5000}},
}
STEPDOWN = {
    "code": 91,
    "codeName": "ShutdownInProgress",
    "errmsg": "Replication is being shut down",
}


def duplicate(index: int) -> dict[str, Any]:
    return {"index": index, "code": 11000, "errmsg": "E11000 duplicate key error"}


def bulk(write_errors: list[Any], concern_errors: list[Any], inserted: int) -> BulkWriteError:
    return BulkWriteError(
        {
            "writeErrors": write_errors,
            "writeConcernErrors": concern_errors,
            "nInserted": inserted,
            "nUpserted": 0,
            "nMatched": 0,
            "nModified": 0,
            "nRemoved": 0,
            "upserted": [],
        }
    )


def test_duplicates_alone_are_refused_positions() -> None:
    # The embedded server reports an empty list of write concern errors: nothing missed.
    assert duplicates_only(bulk([duplicate(1), duplicate(3)], [], inserted=2)) == [1, 3]


def test_a_write_concern_timeout_is_no_success() -> None:
    """All inserted, but not on a majority: a failover may roll them back."""
    with pytest.raises(WTimeoutError) as caught:
        duplicates_only(bulk([], [WTIMEOUT], inserted=3))
    assert caught.value.code == 64 and unavailable(caught.value)


def test_a_write_concern_error_wins_over_duplicates() -> None:
    with pytest.raises(WriteConcernError) as caught:
        duplicates_only(bulk([duplicate(0)], [STEPDOWN], inserted=2))
    assert not isinstance(caught.value, WTimeoutError)
    assert caught.value.code == 91 and unavailable(caught.value)


def test_another_write_error_is_raised_as_it_came() -> None:
    invalid = {"index": 0, "code": 121, "errmsg": "Document failed validation"}
    error = bulk([duplicate(1), invalid], [], inserted=0)
    with pytest.raises(BulkWriteError) as caught:
        duplicates_only(error)
    assert caught.value is error


@pytest.mark.parametrize(
    "exc",
    [
        ServerSelectionTimeoutError("127.0.0.1:27017: timed out"),
        NetworkTimeout("127.0.0.1:27017: timed out"),
        AutoReconnect("connection closed"),
        NotPrimaryError("not primary", {"code": 10107, "errmsg": "not primary"}),
        ExecutionTimeout("operation exceeded time limit", 50, {"code": 50}),
        WTimeoutError("waiting for replication timed out", 64, WTIMEOUT),
        WriteConcernError("Replication is being shut down", 91, STEPDOWN),
        bulk([], [WTIMEOUT], inserted=1),
        OperationFailure(
            "interrupted at shutdown",
            11600,
            {"code": 11600, "errorLabels": ["RetryableWriteError"]},
        ),
    ],
)
def test_a_server_out_of_reach_or_late_is_unavailable(exc: Exception) -> None:
    assert unavailable(exc)


@pytest.mark.parametrize(
    "exc",
    [
        DuplicateKeyError("E11000 duplicate key error", 11000),
        OperationFailure("unknown operator: $foo", 2, {"code": 2}),
        ValueError("not MongoDB's"),
    ],
)
def test_other_failures_are_not_unavailability(exc: Exception) -> None:
    assert not unavailable(exc)
