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
TAG_MERKLE_LEAF = b"pocl/merkle-leaf"
TAG_MERKLE_NODE = b"pocl/merkle-node"
TAG_HANDSHAKE = b"pocl/p2p-handshake"
# A consensus key proves it belongs to the operator that registers it (`validator.create`).
TAG_VALIDATOR_POP = b"pocl/validator-pop"


def tagged_hash(tag: bytes, data: bytes) -> bytes:
    if len(tag) > 255:
        raise ValueError("hash tag too long")
    h = hashlib.sha256()
    h.update(bytes([len(tag)]))
    h.update(tag)
    h.update(data)
    return h.digest()
