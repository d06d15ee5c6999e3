"""Ed25519 identities, addresses and domain-separated signatures (DESIGN §3).

A signature always covers `len(tag) || tag || message`, so a signed vote can never be replayed as a
signed transaction or handshake challenge.
"""

from __future__ import annotations

import dataclasses
import hashlib

import nacl.exceptions
import nacl.signing

ADDRESS_LEN = 20
PUBKEY_LEN = 32
SIGNATURE_LEN = 64
SEED_LEN = 32


class KeyFormatError(ValueError):
    """Malformed key material or address text."""


def _signing_bytes(tag: bytes, message: bytes) -> bytes:
    return bytes([len(tag)]) + tag + message


def address_of(pubkey: bytes) -> bytes:
    """Address = first 20 bytes of SHA-256(pubkey)."""
    if len(pubkey) != PUBKEY_LEN:
        raise KeyFormatError("public key must be 32 bytes")
    return hashlib.sha256(pubkey).digest()[:ADDRESS_LEN]


def format_address(address: bytes) -> str:
    return "0x" + address.hex()


def parse_address(text: str) -> bytes:
    body = text[2:] if text.startswith(("0x", "0X")) else text
    try:
        raw = bytes.fromhex(body)
    except ValueError as exc:
        raise KeyFormatError(f"address is not hex: {text!r}") from exc
    if len(raw) != ADDRESS_LEN:
        raise KeyFormatError(f"address must be {ADDRESS_LEN} bytes (40 hex digits), got {len(raw)}")
    return raw


def verify(pubkey: bytes, tag: bytes, message: bytes, signature: bytes) -> bool:
    """True iff `signature` is pubkey's Ed25519 signature over the tagged message."""
    if len(pubkey) != PUBKEY_LEN or len(signature) != SIGNATURE_LEN:
        return False
    try:
        nacl.signing.VerifyKey(pubkey).verify(_signing_bytes(tag, message), signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False
    return True


@dataclasses.dataclass(frozen=True)
class PrivateKey:
    """An Ed25519 signing key; `seed` is the 32-byte secret."""

    seed: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != SEED_LEN:
            raise KeyFormatError("private key seed must be 32 bytes")

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @classmethod
    def from_seed_text(cls, text: str) -> PrivateKey:
        """Deterministic key from a text seed: for tests and devnets only."""
        return cls(hashlib.sha256(b"pocl/test-key/" + text.encode()).digest())

    @property
    def _signing_key(self) -> nacl.signing.SigningKey:
        return nacl.signing.SigningKey(self.seed)

    @property
    def pubkey(self) -> bytes:
        return bytes(self._signing_key.verify_key)

    @property
    def address(self) -> bytes:
        return address_of(self.pubkey)

    def sign(self, tag: bytes, message: bytes) -> bytes:
        return self._signing_key.sign(_signing_bytes(tag, message)).signature

    def __repr__(self) -> str:  # never leak the seed into logs
        return f"PrivateKey(address={format_address(self.address)})"
