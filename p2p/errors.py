"""Errors raised by the P2P layer (DESIGN §6).

`ProtocolViolation` carries a penalty so the network layer can score and ban misbehaving peers without
knowing which check fired; `HandshakeError` carries a short machine-readable reason code.
"""

from __future__ import annotations

# Reason codes (sent in Disconnect messages and carried by HandshakeError / close reasons).
REASON_PROTOCOL_VERSION = "protocol_version_mismatch"
REASON_CHAIN_ID = "chain_id_mismatch"
REASON_GENESIS = "genesis_hash_mismatch"
REASON_NODE_ID = "node_id_mismatch"
REASON_SELF = "self_connection"
REASON_HANDSHAKE_TIMEOUT = "handshake_timeout"
REASON_BAD_HANDSHAKE = "bad_handshake"
REASON_HANDSHAKE_OVERFLOW = "handshake_overflow"  # far more bytes than a handshake needs
REASON_AUTH_FAILED = "auth_failed"
REASON_LOW_ORDER_POINT = "low_order_point"
REASON_EXPECTED_HELLO = "expected_hello"
REASON_BAD_HELLO = "bad_hello"
REASON_CONNECTION_LOST = "connection_lost"
REASON_IDLE_TIMEOUT = "idle_timeout"
REASON_DECRYPT_FAILED = "decrypt_failed"
REASON_FRAME_TOO_LARGE = "frame_too_large"
REASON_FRAME_TOO_SMALL = "frame_too_small"
REASON_MESSAGE_TOO_LARGE = "message_too_large"
REASON_NONCE_EXHAUSTED = "nonce_exhausted"
REASON_MALFORMED = "malformed_message"
REASON_UNKNOWN_TYPE = "unknown_message_type"
REASON_UNEXPECTED_RESPONSE = "unexpected_response"
REASON_UNEXPECTED_MESSAGE = "unexpected_message"  # e.g. a second hello
REASON_MISBEHAVIOUR = "misbehaviour"
REASON_SHUTDOWN = "shutdown"

# Penalties (the network layer adds them up; ≥ ConnectionConfig.close_penalty closes at once).
PENALTY_FATAL = 100  # broken stream: bad AEAD tag, oversized frame, garbage handshake
PENALTY_MALFORMED = 50  # authenticated peer sent bytes that are not a valid message
PENALTY_UNKNOWN_TYPE = 20
PENALTY_UNEXPECTED_RESPONSE = 10
PENALTY_UNEXPECTED_MESSAGE = 20


class P2PError(Exception):
    """Base class for every error of the P2P layer."""


class HandshakeError(P2PError):
    """The secret handshake or the hello exchange failed; `reason` is a REASON_* code.

    `remote` is True when the reason came from the peer's Disconnect message rather than a local check.
    """

    def __init__(self, reason: str, detail: str = "", *, remote: bool = False) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.remote = remote


class ProtocolViolation(P2PError):
    """The peer broke the protocol; `penalty` scores how bad that is (see PENALTY_*)."""

    def __init__(self, reason: str, penalty: int = PENALTY_MALFORMED, detail: str = "") -> None:
        super().__init__(f"{reason} (penalty {penalty}){': ' + detail if detail else ''}")
        self.reason = reason
        self.penalty = penalty
        self.detail = detail


class ConnectionClosed(P2PError):
    """The connection is closed (or closed while waiting); `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"connection closed: {reason}")
        self.reason = reason


class RemoteError(P2PError):
    """The peer answered a request with an Error message instead of a response."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"remote error {code}{': ' + detail if detail else ''}")
        self.code = code
        self.detail = detail


class TooManyRequests(P2PError):
    """`max_pending_requests` outstanding requests already on this connection."""
