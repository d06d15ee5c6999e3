"""The node's P2P protocols, one home each (like CometBFT's reactors): every message type a protocol
sends or receives is registered here with the `Host` or `Gossip`, with its handlers beside it.

- `consensus.py`: proposals (full and compact), votes, fetching a block +2/3 voted for and the txs of a
  compact proposal we lack (types 64–67, 71–73);
- `tx_gossip.py`: transactions, single and batched (types 68, 70);
- `tx_announce.py`: large transactions announced by hash and fetched once per link (types 74–76).

Block sync (`pocl.p2p.sync`) and peer exchange (`pocl.p2p.pex`) live in `p2p/`, as they need nothing
from the node; every type id is in `pocl.p2p.message_ids`. `node.py` only constructs and wires these.
"""
