"""Authenticated key exchange, modelled on CometBFT's SecretConnection (DESIGN §6).

1. Both sides send `MAGIC ‖ version ‖ ephemeral X25519 public key` in the clear.
2. Low-order points and an all-zero shared secret are refused (they would let a MITM force a known key).
3. HKDF-SHA256 over the shared secret with the SORTED pair of ephemeral keys as context yields one
   ChaCha20-Poly1305 key per direction plus a 32-byte challenge; both sides derive the same transcript
   without agreeing on roles.
4. Inside the encrypted channel each side sends `node_pubkey ‖ Ed25519 signature over the challenge`
   (domain tag TAG_HANDSHAKE), proving it holds the node key for this very session.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hmac

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pocl.ledger.hashing import TAG_HANDSHAKE
from pocl.ledger.keys import PUBKEY_LEN, SIGNATURE_LEN, PrivateKey, verify

from .errors import (
    REASON_AUTH_FAILED,
    REASON_BAD_HANDSHAKE,
    REASON_LOW_ORDER_POINT,
    ConnectionClosed,
    HandshakeError,
    ProtocolViolation,
)
from .frames import NONCE_LIMIT, FrameOpener, FrameProtocol, FrameSealer

MAGIC = b"PoCL"
HANDSHAKE_VERSION = 1
EPH_KEY_LEN = 32
PREAMBLE_LEN = len(MAGIC) + 1 + EPH_KEY_LEN
AUTH_LEN = PUBKEY_LEN + SIGNATURE_LEN
HKDF_INFO = b"pocl/p2p-secret-connection/v1"

# Curve25519 points of small order (and their non-canonical encodings): an exchange with any of them
# gives a shared secret the attacker knows, whatever our private key.
LOW_ORDER_POINTS = frozenset(
    bytes.fromhex(h)
    for h in (
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    )
)


@dataclasses.dataclass(frozen=True)
class SessionKeys:
    send_key: bytes
    recv_key: bytes
    challenge: bytes


def is_low_order_point(pub: bytes) -> bool:
    # Bit 255 is ignored by X25519, so compare with it cleared.
    return pub[:31] + bytes([pub[31] & 0x7F]) in LOW_ORDER_POINTS or pub in LOW_ORDER_POINTS


def derive_session_keys(local_eph: bytes, remote_eph: bytes, shared: bytes) -> SessionKeys:
    """Both sides call this with their own view; the sorted transcript makes the results mirror each other."""
    if hmac.compare_digest(local_eph, remote_eph):
        raise HandshakeError(REASON_BAD_HANDSHAKE, "reflected ephemeral key")
    lo, hi = sorted((local_eph, remote_eph))
    okm = HKDF(algorithm=hashes.SHA256(), length=96, salt=None, info=HKDF_INFO + lo + hi).derive(shared)
    key_lo, key_hi, challenge = okm[:32], okm[32:64], okm[64:]
    if local_eph == lo:
        return SessionKeys(send_key=key_lo, recv_key=key_hi, challenge=challenge)
    return SessionKeys(send_key=key_hi, recv_key=key_lo, challenge=challenge)


def x25519_shared(private: X25519PrivateKey, remote_eph: bytes) -> bytes:
    if is_low_order_point(remote_eph):
        raise HandshakeError(REASON_LOW_ORDER_POINT)
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(remote_eph))
    except ValueError:  # OpenSSL refuses an all-zero result
        raise HandshakeError(REASON_LOW_ORDER_POINT) from None
    if shared == bytes(len(shared)):
        raise HandshakeError(REASON_LOW_ORDER_POINT)
    return shared


class Inbox:
    """Collects decrypted messages delivered by the FrameProtocol until someone consumes them."""

    def __init__(self) -> None:
        self.messages: collections.deque[list[bytes]] = collections.deque()
        self.broken: tuple[ProtocolViolation | None, str] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def on_message(self, payload: list[bytes]) -> None:
        self.messages.append(payload)
        self._wake()

    def on_broken(self, violation: ProtocolViolation | None, reason: str) -> None:
        self.broken = (violation, reason)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> list[bytes]:
        """The next message, as the plaintexts of its frames."""
        while not self.messages:
            if self.broken is not None:
                raise ConnectionClosed(self.broken[1])
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.messages.popleft()


@dataclasses.dataclass
class SecretChannel:
    remote_node_id: bytes
    sealer: FrameSealer
    opener: FrameOpener
    inbox: Inbox


async def secret_handshake(
    proto: FrameProtocol,
    node_key: PrivateKey,
    *,
    max_frame_bytes: int,
    nonce_limit: int = NONCE_LIMIT,
    chunk_bytes: int | None = None,
) -> SecretChannel:
    """Run steps 1–4 on a fresh stream; raise HandshakeError on any failure (the caller closes)."""
    eph = X25519PrivateKey.generate()
    local_eph = eph.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        proto.write(MAGIC + bytes([HANDSHAKE_VERSION]) + local_eph)
        preamble = await proto.read_exactly(PREAMBLE_LEN)
    except ConnectionClosed as exc:
        raise HandshakeError(exc.reason, "during key exchange") from None
    if preamble[: len(MAGIC)] != MAGIC:
        raise HandshakeError(REASON_BAD_HANDSHAKE, "bad magic")
    if preamble[len(MAGIC)] != HANDSHAKE_VERSION:
        raise HandshakeError(REASON_BAD_HANDSHAKE, f"handshake version {preamble[len(MAGIC)]}")
    remote_eph = preamble[len(MAGIC) + 1 :]
    keys = derive_session_keys(local_eph, remote_eph, x25519_shared(eph, remote_eph))

    sealer = FrameSealer(keys.send_key, max_frame_bytes, nonce_limit, chunk_bytes)
    opener = FrameOpener(keys.recv_key, nonce_limit)
    inbox = Inbox()
    proto.start_frames(opener, inbox.on_message, inbox.on_broken)
    try:
        proto.write(sealer.seal_frame(node_key.pubkey + node_key.sign(TAG_HANDSHAKE, keys.challenge)))
        auth = b"".join(await inbox.get())
    except ConnectionClosed as exc:
        if inbox.broken is not None and inbox.broken[0] is not None:
            raise HandshakeError(REASON_BAD_HANDSHAKE, inbox.broken[0].reason) from None
        raise HandshakeError(exc.reason, "during authentication") from None
    if len(auth) != AUTH_LEN:
        raise HandshakeError(REASON_BAD_HANDSHAKE, "bad auth message length")
    remote_node_id, signature = auth[:PUBKEY_LEN], auth[PUBKEY_LEN:]
    if not verify(remote_node_id, TAG_HANDSHAKE, keys.challenge, signature):
        raise HandshakeError(REASON_AUTH_FAILED, "bad challenge signature")
    return SecretChannel(remote_node_id, sealer, opener, inbox)
