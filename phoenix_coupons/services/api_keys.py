"""API keys: creation (plaintext shown once), listing, revocation, and authentication of
both credentials of the spec: `X-API-Key` and an HS256 JWT signed with the key's value."""

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import jwt

from phoenix_coupons.domain.clock import Clock
from phoenix_coupons.domain.models import ApiKey
from phoenix_coupons.domain.scopes import parse_scopes
from phoenix_coupons.services.ports import ApiKeyRepo
from phoenix_coupons.services.secrets_box import SecretBox, key_hash

KEY_PREFIX = "pk_"
REQUIRED_CLAIMS = ("sub_type", "sub_id", "exp")
JWT_LEEWAY_S = 30


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    scopes: frozenset[str]
    tenant_id: str | None
    via: Literal["api_key", "jwt"]


class AuthError(Exception):
    """401: the credentials are missing or not valid. `reason` is machine-readable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


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
        if not name.strip():
            raise ValueError("give the key a name")
        plaintext = new_plaintext_key()
        key = ApiKey(
            id=str(uuid.uuid4()),
            name=name.strip(),
            scopes=parse_scopes(scopes),
            tenant_id=tenant_id or None,
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
        key = await self._repo.by_hash(key_hash(plaintext))
        if key is None:
            raise AuthError("unknown_api_key", "the API key is not known")
        return self._principal(key, "api_key")

    async def from_jwt(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            unverified: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise AuthError("malformed_token", f"the bearer token is not a JWT: {exc}") from exc
        if header.get("alg") != "HS256":
            raise AuthError(
                "unsupported_algorithm", f"token algorithm {header.get('alg')!r}: only HS256"
            )
        missing = [c for c in REQUIRED_CLAIMS if c not in unverified]
        if missing:
            raise AuthError("missing_claims", f"token lacks claims: {', '.join(missing)}")
        if unverified["sub_type"] != "admin":
            raise AuthError("not_admin", "token sub_type must be 'admin'")
        key = await self._repo.get(str(unverified["sub_id"]))
        if key is None:
            raise AuthError("unknown_api_key", "the token's sub_id is not a known API key")
        now = self._clock()
        try:
            claims = jwt.decode(
                token,
                self._box.decrypt(key.secret_enc),
                algorithms=["HS256"],
                options={"require": list(REQUIRED_CLAIMS), "verify_iat": False},
                leeway=JWT_LEEWAY_S,
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token_expired", "the token has expired") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError("bad_signature", "the token signature does not verify") from exc
        except jwt.PyJWTError as exc:
            raise AuthError("invalid_token", f"the token is not valid: {exc}") from exc
        self._check_lifetime(claims, now)
        return self._principal(key, "jwt")

    def _check_lifetime(self, claims: dict[str, Any], now: datetime) -> None:
        exp = datetime.fromtimestamp(float(claims["exp"]), UTC)
        issued = claims.get("iat")
        start = datetime.fromtimestamp(float(issued), UTC) if issued is not None else now
        if (exp - start).total_seconds() > self._max_lifetime + JWT_LEEWAY_S:
            raise AuthError(
                "token_lifetime_too_long",
                f"token lifetime exceeds the allowed {self._max_lifetime} s",
            )

    @staticmethod
    def _principal(key: ApiKey, via: Literal["api_key", "jwt"]) -> Principal:
        if not key.active:
            raise AuthError("revoked_api_key", "the API key has been revoked")
        return Principal(
            key_id=key.id,
            name=key.name,
            scopes=frozenset(key.scopes),
            tenant_id=key.tenant_id,
            via=via,
        )
