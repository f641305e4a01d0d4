"""JWT claims judged against the service's injected clock: the lifetime is
measured from now, `iat`/`nbf` may not lie in the future beyond the leeway, and any malformed
NumericDate answers `invalid_token` (an Unauthenticated), never another exception."""

import base64
import math
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest

from phoenix_coupons.domain.errors import Unauthenticated
from phoenix_coupons.domain.models import ApiKey
from phoenix_coupons.services.api_keys import JWT_LEEWAY_S, ApiKeyService
from phoenix_coupons.services.secrets_box import SecretBox
from tests.fakes import FakeApiKeyRepo, FakeClock

NOW = datetime(2021, 6, 1, 12, 0, tzinfo=UTC)  # far from the wall clock on purpose
T = int(NOW.timestamp())
MAX_S = 24 * 3600
YEAR_S = 365 * 24 * 3600


@pytest.fixture
async def issued() -> tuple[ApiKeyService, ApiKey, str]:
    service = ApiKeyService(
        FakeApiKeyRepo(), SecretBox("unit-test-secret-key"), FakeClock(NOW), MAX_S
    )
    key, plaintext = await service.create("unit", "coupons:read", "acme")
    return service, key, plaintext


def token(key: ApiKey, secret: str, **claims: Any) -> str:
    payload: dict[str, Any] = {"sub_type": "admin", "sub_id": key.id, "iat": T, "exp": T + 300}
    payload.update(claims)
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, "HS256")


async def reason(service: ApiKeyService, text: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await service.from_jwt(text)
    return caught.value.code


@pytest.mark.parametrize(
    "claims",
    [
        {},
        {"iat": None, "exp": T + MAX_S},
        {"exp": T + MAX_S + JWT_LEEWAY_S},
        {"iat": T + JWT_LEEWAY_S, "exp": T + 600},  # a clock slightly ahead of ours
        {"nbf": T + JWT_LEEWAY_S},
        {"exp": T - JWT_LEEWAY_S + 1},  # expired within the leeway
        {"exp": T + 300.5, "iat": T - 0.25},  # NumericDate may be fractional
    ],
)
async def test_valid_tokens_by_the_injected_clock(
    issued: tuple[ApiKeyService, ApiKey, str], claims: dict[str, Any]
) -> None:
    service, key, secret = issued
    principal = await service.from_jwt(token(key, secret, **claims))
    assert principal.key_id == key.id and principal.via == "jwt"


async def test_expiry_is_judged_by_the_injected_clock(
    issued: tuple[ApiKeyService, ApiKey, str],
) -> None:
    service, key, secret = issued
    assert await reason(service, token(key, secret, exp=T - JWT_LEEWAY_S - 1)) == "token_expired"


async def test_future_iat_cannot_stretch_the_lifetime(
    issued: tuple[ApiKeyService, ApiKey, str],
) -> None:
    """The reported bypass: issued ten years ahead, valid for 23 h from then."""
    service, key, secret = issued
    future = T + 10 * YEAR_S
    text = token(key, secret, iat=future, exp=future + 23 * 3600)
    assert await reason(service, text) == "token_not_yet_valid"


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"iat": T + JWT_LEEWAY_S + 1}, "token_not_yet_valid"),
        ({"nbf": T + JWT_LEEWAY_S + 1}, "token_not_yet_valid"),
        ({"iat": None, "exp": T + MAX_S + JWT_LEEWAY_S + 1}, "token_lifetime_too_long"),
        ({"iat": T - 3600, "exp": T + MAX_S - 60}, "token_lifetime_too_long"),
        # Measured from now even when iat is within the leeway ahead.
        ({"iat": T + JWT_LEEWAY_S, "exp": T + MAX_S + JWT_LEEWAY_S + 1}, "token_lifetime_too_long"),
    ],
)
async def test_lifetime_and_not_before(
    issued: tuple[ApiKeyService, ApiKey, str], claims: dict[str, Any], expected: str
) -> None:
    service, key, secret = issued
    assert await reason(service, token(key, secret, **claims)) == expected


MALFORMED = [
    {"exp": 1e20},
    {"exp": 10**30},
    {"exp": -(10**30)},
    {"exp": True},
    {"exp": [T + 60]},
    {"exp": {"at": T}},
    {"exp": str(T + 60)},
    {"exp": math.nan},
    {"exp": math.inf},
    {"iat": "x"},
    {"iat": 10**30},
    {"iat": -math.inf},
    {"iat": False},
    {"nbf": "soon"},
    {"nbf": math.nan},
    {"sub_id": ["not", "an", "id"]},
]


@pytest.mark.parametrize("claims", MALFORMED, ids=[repr(c) for c in MALFORMED])
async def test_malformed_claims_are_invalid_tokens(
    issued: tuple[ApiKeyService, ApiKey, str], claims: dict[str, Any]
) -> None:
    service, key, secret = issued
    assert await reason(service, token(key, secret, **claims)) == "invalid_token"


async def test_oversized_token_is_malformed(issued: tuple[ApiKeyService, ApiKey, str]) -> None:
    service, key, secret = issued
    padded = token(key, secret, pad="x" * 9000)
    assert await reason(service, padded) == "malformed_token"


def _resigned(text: str, signature: bytes) -> str:
    head, payload, _ = text.split(".")
    return f"{head}.{payload}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


async def test_signature_checked_once_parsed(issued: tuple[ApiKeyService, ApiKey, str]) -> None:
    """The token is parsed once and its HS256 signature checked by hand: the key's own
    signature verifies; another secret's, a truncated, an empty or a flipped one, or claims
    changed under a valid signature, answer `bad_signature`; a token that is no JWT is
    `malformed_token`, as before."""
    service, key, secret = issued
    good = token(key, secret)
    assert (await service.from_jwt(good)).key_id == key.id
    signature = base64.urlsafe_b64decode(good.split(".")[2] + "==")
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    head, _, sig = good.split(".")
    other_claims = token(key, secret, exp=T + 600).split(".")[1]
    for bad in (
        token(key, secret + "x"),
        _resigned(good, signature[:16]),
        _resigned(good, b""),
        _resigned(good, flipped),
        f"{head}.{other_claims}.{sig}",
    ):
        assert await reason(service, bad) == "bad_signature", bad
    for text in ("not-a-jwt", "a.b", f"{head}.!!!.{sig}"):
        assert await reason(service, text) == "malformed_token", text
