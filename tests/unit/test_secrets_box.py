"""API key secrets at rest: AES-256-GCM round trip, tamper detection, look-up hash."""

import base64
import hashlib

import pytest
from cryptography.exceptions import InvalidTag

from phoenix_coupons.services.secrets_box import NONCE_BYTES, SecretBox, key_hash

KEY = "k" * 16
PLAIN = "pk_" + "A1b2C3d4" * 5


def test_round_trip() -> None:
    box = SecretBox(KEY)
    token = box.encrypt(PLAIN)
    assert token.startswith("v1:")
    assert PLAIN not in token
    assert box.decrypt(token) == PLAIN


def test_round_trip_of_unicode_and_empty_text() -> None:
    box = SecretBox("another secret key, longer")
    for text in ["", "ключ-🔑", "x" * 10_000]:
        assert box.decrypt(box.encrypt(text)) == text


def test_another_box_with_the_same_key_decrypts() -> None:
    assert SecretBox(KEY).decrypt(SecretBox(KEY).encrypt(PLAIN)) == PLAIN


def test_each_encryption_uses_a_fresh_nonce() -> None:
    box = SecretBox(KEY)
    tokens = {box.encrypt(PLAIN) for _ in range(20)}
    assert len(tokens) == 20
    nonces = {base64.b64decode(t.removeprefix("v1:"))[:NONCE_BYTES] for t in tokens}
    assert len(nonces) == 20


def test_a_wrong_key_is_detected() -> None:
    token = SecretBox(KEY).encrypt(PLAIN)
    with pytest.raises(InvalidTag):
        SecretBox("k" * 17).decrypt(token)


@pytest.mark.parametrize("position", [0, NONCE_BYTES - 1, NONCE_BYTES, -1])
def test_a_tampered_token_is_detected(position: int) -> None:
    box = SecretBox(KEY)
    raw = bytearray(base64.b64decode(box.encrypt(PLAIN).removeprefix("v1:")))
    raw[position] ^= 0x01
    with pytest.raises(InvalidTag):
        box.decrypt("v1:" + base64.b64encode(bytes(raw)).decode())


def test_a_truncated_token_is_detected() -> None:
    box = SecretBox(KEY)
    raw = base64.b64decode(box.encrypt(PLAIN).removeprefix("v1:"))
    with pytest.raises(InvalidTag):
        box.decrypt("v1:" + base64.b64encode(raw[:-1]).decode())


@pytest.mark.parametrize("secret", ["", "short", "x" * 15])
def test_a_short_secret_key_is_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="at least 16"):
        SecretBox(secret)


def test_key_hash_is_stable_sha256_hex() -> None:
    assert key_hash(PLAIN) == key_hash(PLAIN)
    assert key_hash(PLAIN) == hashlib.sha256(PLAIN.encode()).hexdigest()
    assert len(key_hash(PLAIN)) == 64
    assert key_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_key_hash_differs_per_key() -> None:
    assert key_hash(PLAIN) != key_hash(PLAIN + "x")
    assert key_hash("pk_a") != key_hash("pk_A")
