"""Domain-separated SHA-256 (DESIGN §3).

Each object kind hashes under its own tag so bytes valid as one kind can never collide with another's
hash. The digest is SHA-256(len(tag) || tag || data).
"""

from __future__ import annotations

import hashlib

HASH_LEN = 32

TAG_TX = b"pocl/tx"
TAG_TX_SIG = b"pocl/tx-sig"
TAG_HEADER = b"pocl/header"
TAG_TXS_ROOT = b"pocl/txs-root"
TAG_COMMIT = b"pocl/commit"
TAG_VOTE = b"pocl/vote"
TAG_PROPOSAL = b"pocl/proposal"
TAG_STATE_LEAF = b"pocl/state-leaf"
TAG_STATE_BUCKET = b"pocl/state-bucket"
TAG_STATE_ROOT = b"pocl/state-root"
TAG_GENESIS = b"pocl/genesis"
TAG_WEIGHTS = b"pocl/weights"
TAG_ARRAY = b"pocl/array"
TAG_MERKLE_LEAF = b"pocl/merkle-leaf"
TAG_MERKLE_NODE = b"pocl/merkle-node"
TAG_NODE_ID = b"pocl/node-id"
TAG_HANDSHAKE = b"pocl/p2p-handshake"


def tagged_hash(tag: bytes, data: bytes) -> bytes:
    if len(tag) > 255:
        raise ValueError("hash tag too long")
    h = hashlib.sha256()
    h.update(bytes([len(tag)]))
    h.update(tag)
    h.update(data)
    return h.digest()


def merkle_root(leaves: list[bytes]) -> bytes:
    """Binary Merkle root over already-hashed-or-raw leaves (RFC 6962 style, no duplicate-last trick)."""
    if not leaves:
        return tagged_hash(TAG_MERKLE_LEAF, b"")
    level = [tagged_hash(TAG_MERKLE_LEAF, leaf) for leaf in leaves]
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level) - 1, 2):
            nxt.append(tagged_hash(TAG_MERKLE_NODE, level[i] + level[i + 1]))
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]
