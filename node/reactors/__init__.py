"""The node's P2P protocols, one home each (like CometBFT's reactors): every message type a protocol
sends or receives is registered here with the `Host` or `Gossip`, with its handlers beside it.

- `consensus.py`: proposals, votes, fetching a block +2/3 voted for (types 64–67);
- `tx_gossip.py`: transactions, single and batched (types 68, 70).

Block sync (`pocl.p2p.sync`) and peer exchange (`pocl.p2p.pex`) live in `p2p/`, as they need nothing
from the node; every type id is in `pocl.p2p.message_ids`. `node.py` only constructs and wires these.
"""
