"""API keys: creation (plaintext shown once), listing, revocation, and authentication of
both credentials of the spec: `X-API-Key` and an HS256 JWT signed with the key's value."""

import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import jwt

from phoenix_coupons.domain.clock import Clock
from phoenix_coupons.domain.errors import FieldError, Unauthenticated, ValidationFailed
from phoenix_coupons.domain.models import ApiKey
from phoenix_coupons.domain.scopes import parse_scopes
from phoenix_coupons.services.ports import ApiKeyRepo
from phoenix_coupons.services.secrets_box import SecretBox, key_hash
from schemas.bounds import NAME_MAX_LENGTH, TENANT_ID_MAX_LENGTH, TENANT_ID_PATTERN

KEY_PREFIX = "pk_"
REQUIRED_CLAIMS = ("sub_type", "sub_id", "exp")
JWT_LEEWAY_S = 30
# Credentials longer than these are no credentials of ours (keys are 46 characters).
MAX_API_KEY_CHARS = 256
MAX_TOKEN_CHARS = 8192
MAX_KEY_ID_CHARS = 64
# NumericDate claims: seconds since the epoch, up to the last second of year 9999 (the
# largest a datetime holds), as a JSON number that is not a boolean.
MAX_NUMERIC_DATE = 253_402_300_799


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    scopes: frozenset[str]
    tenant_id: str | None
    via: Literal["api_key", "jwt"]
    # The key's blocked code look-ups (ApiKey.lookup_blocks), as read to authenticate.
    lookup_blocks: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TokenTimes:
    exp: float
    iat: float | None
    nbf: float | None


def token_times(claims: dict[str, Any]) -> TokenTimes:
    """The token's NumericDate claims, or Unauthenticated `invalid_token` naming a malformed one
    (a string, a boolean, NaN, infinity, or out of range): never another exception."""
    values: dict[str, float | None] = {}
    for name in ("exp", "iat", "nbf"):
        if name not in claims:
            values[name] = None
            continue
        value = claims[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 <= value <= MAX_NUMERIC_DATE  # False for NaN too
        ):
            raise Unauthenticated(
                f"the token's {name!r} claim must be a NumericDate: seconds since the epoch, "
                f"from 0 to {MAX_NUMERIC_DATE}",
                code="invalid_token",
            )
        values[name] = float(value)
    exp = values["exp"]
    if exp is None:
        raise Unauthenticated("token lacks claims: exp", code="missing_claims")
    return TokenTimes(exp=exp, iat=values["iat"], nbf=values["nbf"])


def hs256_verifies(token: str, signature: bytes, secret: str) -> bool:
    """RFC 7515's HS256 check of a compact JWS whose segments are parsed already: the HMAC
    of its signing input (all before the last '.') under `secret`, compared in constant time."""
    signing_input = token.rpartition(".")[0].encode()
    expected = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return hmac.compare_digest(expected, signature)


def tenant_id_reason(tenant_id: str) -> str | None:
    """Why `tenant_id` is not one the URL paths accept, or None."""
    if not tenant_id:
        return "must not be empty (leave --tenant out for a key of every tenant)"
    if len(tenant_id) > TENANT_ID_MAX_LENGTH:
        return f"must be at most {TENANT_ID_MAX_LENGTH} characters"
    if not re.fullmatch(TENANT_ID_PATTERN, tenant_id):
        return (
            "must be ASCII letters, digits, '_', '.' and '-', starting with a letter or digit "
            f"(the tenant ids of the URL paths: {TENANT_ID_PATTERN})"
        )
    return None


def new_plaintext_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)  # 43 characters, 256 bits


class ApiKeyService:
    def __init__(
        self, repo: ApiKeyRepo, box: SecretBox, clock: Clock, jwt_max_lifetime_s: int
    ) -> None:
        self._repo = repo
        self._box = box
        self._clock = clock
        self._max_lifetime = jwt_max_lifetime_s

    async def create(self, name: str, scopes: str, tenant_id: str | None) -> tuple[ApiKey, str]:
        """`tenant_id` None: a key for every tenant; a tenant id must be one the URL paths
        accept (an empty one once made an all-tenant key)."""
        name = name.strip()
        if not name:
            raise ValidationFailed(
                "--name: give the key a name", details=[FieldError("name", "is empty")]
            )
        if len(name) > NAME_MAX_LENGTH:
            raise ValidationFailed(
                f"--name: at most {NAME_MAX_LENGTH} characters",
                details=[FieldError("name", f"at most {NAME_MAX_LENGTH} characters")],
            )
        if tenant_id is not None and (reason := tenant_id_reason(tenant_id)):
            raise ValidationFailed(
                f"--tenant {tenant_id!r}: {reason}", details=[FieldError("tenant_id", reason)]
            )
        plaintext = new_plaintext_key()
        key = ApiKey(
            id=str(uuid.uuid4()),
            name=name,
            scopes=parse_scopes(scopes),
            tenant_id=tenant_id,
            key_hash=key_hash(plaintext),
            secret_enc=self._box.encrypt(plaintext),
            created_at=self._clock(),
        )
        await self._repo.insert(key)
        return key, plaintext

    async def all(self) -> list[ApiKey]:
        return await self._repo.all()

    async def revoke(self, key_id: str) -> bool:
        return await self._repo.revoke(key_id, self._clock())

    async def from_api_key(self, plaintext: str) -> Principal:
        if len(plaintext) > MAX_API_KEY_CHARS:
            raise Unauthenticated("the API key is not known", code="unknown_api_key")
        key = await self._repo.by_hash(key_hash(plaintext))
        if key is None:
            raise Unauthenticated("the API key is not known", code="unknown_api_key")
        return self._principal(key, "api_key")

    async def from_jwt(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthenticated(
                f"the bearer token is longer than {MAX_TOKEN_CHARS} characters",
                code="malformed_token",
            )
        try:
            # One parse for the header and the claims; the signature is checked below, once
            # the key is read (PyJWT's decode would parse the token again: 3x the CPU).
            parsed = jwt.api_jwt.decode_complete(token, options={"verify_signature": False})
            header: dict[str, Any] = parsed["header"]
            unverified: dict[str, Any] = parsed["payload"]
        except jwt.PyJWTError as exc:
            raise Unauthenticated(
                f"the bearer token is not a JWT: {exc}", code="malformed_token"
            ) from exc
        if header.get("alg") != "HS256":
            raise Unauthenticated(
                f"token algorithm {header.get('alg')!r}: only HS256",
                code="unsupported_algorithm",
            )
        missing = [c for c in REQUIRED_CLAIMS if c not in unverified]
        if missing:
            raise Unauthenticated(
                f"token lacks claims: {', '.join(missing)}", code="missing_claims"
            )
        if unverified["sub_type"] != "admin":
            raise Unauthenticated("token sub_type must be 'admin'", code="not_admin")
        times = token_times(unverified)
        key_id = unverified["sub_id"]
        if not isinstance(key_id, str) or len(key_id) > MAX_KEY_ID_CHARS:
            raise Unauthenticated(
                "the token's 'sub_id' must be an API key id", code="invalid_token"
            )
        key = await self._repo.get(key_id)
        if key is None:
            raise Unauthenticated(
                "the token's sub_id is not a known API key", code="unknown_api_key"
            )
        # The signature only (the key's secret, decrypted: 2 us); the times are judged
        # below, by the service's clock.
        if not hs256_verifies(token, parsed["signature"], self._box.decrypt(key.secret_enc)):
            raise Unauthenticated("the token signature does not verify", code="bad_signature")
        self._check_times(times, self._clock().timestamp())
        return self._principal(key, "jwt")

    def _check_times(self, times: TokenTimes, now: float) -> None:
        """Expiry, not-before and the lifetime cap, measured from now: an `iat` in the future
        cannot stretch the lifetime, and a backdated one cannot either."""
        if times.exp + JWT_LEEWAY_S < now:
            raise Unauthenticated("the token has expired", code="token_expired")
        for name, at in (("nbf", times.nbf), ("iat", times.iat)):
            if at is not None and at > now + JWT_LEEWAY_S:
                raise Unauthenticated(
                    f"the token's {name!r} lies in the future (more than {JWT_LEEWAY_S} s ahead)",
                    code="token_not_yet_valid",
                )
        start = min(times.iat, now) if times.iat is not None else now
        if times.exp - start > self._max_lifetime + JWT_LEEWAY_S:
            raise Unauthenticated(
                f"token lifetime exceeds the allowed {self._max_lifetime} s",
                code="token_lifetime_too_long",
            )

    @staticmethod
    def _principal(key: ApiKey, via: Literal["api_key", "jwt"]) -> Principal:
        if not key.active:
            raise Unauthenticated("the API key has been revoked", code="revoked_api_key")
        return Principal(
            key_id=key.id,
            name=key.name,
            scopes=frozenset(key.scopes),
            tenant_id=key.tenant_id,
            via=via,
            lookup_blocks=key.lookup_blocks,
        )
