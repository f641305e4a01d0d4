"""Encryption at rest of API key secrets (AES-256-GCM), and their look-up hash."""

import base64
import hashlib
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


class SecretBox:
    """Encrypts with a key derived from `PHOENIX_SECRET_KEY` (any string; SHA-256 makes it
    32 bytes). Output is `v1:` + base64(nonce + ciphertext)."""

    def __init__(self, secret_key: str) -> None:
        if len(secret_key) < 16:
            raise ValueError("PHOENIX_SECRET_KEY must be at least 16 characters")
        self._aead = AESGCM(hashlib.sha256(secret_key.encode()).digest())

    def encrypt(self, plaintext: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), b"phoenix-api-key")
        return "v1:" + base64.b64encode(nonce + sealed).decode()

    def decrypt(self, token: str) -> str:
        raw = base64.b64decode(token.removeprefix("v1:"))
        return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], b"phoenix-api-key").decode()


def key_hash(plaintext: str) -> str:
    """SHA-256 hex: the keys are 190+ bits of randomness, so a fast hash is safe for look-up."""
    return hashlib.sha256(plaintext.encode()).hexdigest()
