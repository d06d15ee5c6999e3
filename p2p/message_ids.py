"""Every P2P message type id, in one table: its number on the wire, its name and the protocol that owns it.

Type ids are wire format: an id is never renumbered or reused. They are partitioned so layers never
collide: 1–15 the transport itself, 16–63 network protocols in `p2p/`, 64 and up the node's protocols.
Each protocol registers its message classes under these entries (`MessageRegistry.register`), so the
table is the only place an id is written; `tests/node/test_message_ids.py` checks that a node registers
exactly this table.
"""

from __future__ import annotations

import dataclasses

MAX_TYPE_ID = 0xFFFF
TRANSPORT_TYPE_IDS = range(1, 16)
NETWORK_TYPE_IDS = range(16, 64)
NODE_TYPE_IDS = range(64, MAX_TYPE_ID + 1)

# Owner protocols.
TRANSPORT = "transport"  # p2p/connection.py
PEER_EXCHANGE = "peer_exchange"  # p2p/pex.py
BLOCK_SYNC = "block_sync"  # p2p/sync.py
CONSENSUS = "consensus"  # node/reactors/consensus.py
TX_GOSSIP = "tx_gossip"  # node/reactors/tx_gossip.py
STATE_SYNC = "state_sync"  # node/reactors/statesync.py


@dataclasses.dataclass(frozen=True)
class MessageId:
    """One message type: `type_id` on the wire, `name` in logs and errors, owner `protocol`."""

    type_id: int
    name: str
    protocol: str


HELLO = MessageId(1, "hello", TRANSPORT)
PING = MessageId(2, "ping", TRANSPORT)
PONG = MessageId(3, "pong", TRANSPORT)
DISCONNECT = MessageId(4, "disconnect", TRANSPORT)
ERROR = MessageId(5, "error", TRANSPORT)

GET_ADDRS = MessageId(16, "get_addrs", PEER_EXCHANGE)
ADDRS = MessageId(17, "addrs", PEER_EXCHANGE)

GET_STATUS = MessageId(20, "get_status", BLOCK_SYNC)
STATUS = MessageId(21, "status", BLOCK_SYNC)
GET_BLOCKS = MessageId(22, "get_blocks", BLOCK_SYNC)
BLOCKS = MessageId(23, "blocks", BLOCK_SYNC)

PROPOSAL = MessageId(64, "proposal", CONSENSUS)
VOTE = MessageId(65, "vote", CONSENSUS)
GET_PROPOSAL_BLOCK = MessageId(66, "get_proposal_block", CONSENSUS)
PROPOSAL_BLOCK = MessageId(67, "proposal_block", CONSENSUS)

TX = MessageId(68, "tx", TX_GOSSIP)  # one transaction (still accepted; new ones go out batched)
TX_BATCH = MessageId(70, "tx_batch", TX_GOSSIP)

COMPACT_PROPOSAL = MessageId(71, "compact_proposal", CONSENSUS)  # a proposal naming its txs by hash
GET_BLOCK_TXS = MessageId(72, "get_block_txs", CONSENSUS)  # the txs of a compact block we lack
BLOCK_TXS = MessageId(73, "block_txs", CONSENSUS)
TX_ANNOUNCE = MessageId(74, "tx_announce", TX_GOSSIP)  # hashes of large txs; peers fetch each one once
GET_TX = MessageId(75, "get_tx", TX_GOSSIP)
TX_BODY = MessageId(76, "tx_body", TX_GOSSIP)

GET_SNAPSHOTS = MessageId(80, "get_snapshots", STATE_SYNC)
SNAPSHOTS = MessageId(81, "snapshots", STATE_SYNC)
GET_SNAPSHOT_MANIFEST = MessageId(82, "get_snapshot_manifest", STATE_SYNC)
SNAPSHOT_MANIFEST = MessageId(83, "snapshot_manifest", STATE_SYNC)
GET_SNAPSHOT_CHUNK = MessageId(84, "get_snapshot_chunk", STATE_SYNC)
SNAPSHOT_CHUNK = MessageId(85, "snapshot_chunk", STATE_SYNC)
GET_HEADERS = MessageId(86, "get_headers", STATE_SYNC)
HEADERS = MessageId(87, "headers", STATE_SYNC)
GET_MODEL = MessageId(88, "get_model", STATE_SYNC)
MODEL = MessageId(89, "model", STATE_SYNC)

MESSAGE_IDS: tuple[MessageId, ...] = (
    HELLO,
    PING,
    PONG,
    DISCONNECT,
    ERROR,
    GET_ADDRS,
    ADDRS,
    GET_STATUS,
    STATUS,
    GET_BLOCKS,
    BLOCKS,
    PROPOSAL,
    VOTE,
    GET_PROPOSAL_BLOCK,
    PROPOSAL_BLOCK,
    TX,
    TX_BATCH,
    COMPACT_PROPOSAL,
    GET_BLOCK_TXS,
    BLOCK_TXS,
    TX_ANNOUNCE,
    GET_TX,
    TX_BODY,
    GET_SNAPSHOTS,
    SNAPSHOTS,
    GET_SNAPSHOT_MANIFEST,
    SNAPSHOT_MANIFEST,
    GET_SNAPSHOT_CHUNK,
    SNAPSHOT_CHUNK,
    GET_HEADERS,
    HEADERS,
    GET_MODEL,
    MODEL,
)
