"""The binary Merkle root over a block's transactions (DESIGN §3).

RFC 6962 style without the duplicate-last trick: leaves hash under `TAG_MERKLE_LEAF`, pairs under
`TAG_MERKLE_NODE`, an odd node is carried up unchanged, and the root of no leaves is the leaf hash of
b"". The tagged hashes (`hashing.tagged_hash`) are inlined: this runs over every tx of every block,
and the generic call costs more than executing a transfer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from pocl.ledger.hashing import TAG_MERKLE_LEAF, TAG_MERKLE_NODE

_LEAF_PREFIX = bytes([len(TAG_MERKLE_LEAF)]) + TAG_MERKLE_LEAF
_NODE_PREFIX = bytes([len(TAG_MERKLE_NODE)]) + TAG_MERKLE_NODE


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    sha = hashlib.sha256
    if not leaves:
        return sha(_LEAF_PREFIX).digest()
    level = [sha(_LEAF_PREFIX + leaf).digest() for leaf in leaves]
    while len(level) > 1:
        nxt = [sha(_NODE_PREFIX + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]
