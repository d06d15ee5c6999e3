"""Whom we talk to: the hello checks that end a connection right after the handshake (DESIGN §6)."""

from __future__ import annotations

from .errors import REASON_BAD_HELLO, REASON_CHAIN_ID, REASON_GENESIS, REASON_PROTOCOL_VERSION
from .messages import Hello


def check_hello(local: Hello, remote: Hello, remote_node_id: bytes) -> str | None:
    """The REASON_* code for a peer we must not talk to (other protocol version, chain or genesis, or a
    hello naming another node than the key that authenticated), or None."""
    if remote.protocol_version != local.protocol_version:
        return REASON_PROTOCOL_VERSION
    if remote.chain_id != local.chain_id:
        return REASON_CHAIN_ID
    if remote.genesis_hash != local.genesis_hash:
        return REASON_GENESIS
    if remote.node_id != remote_node_id:
        return REASON_BAD_HELLO
    return None
