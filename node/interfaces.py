"""What the node's plug-ins (RPC, metrics, miner) need from it, as small structural Protocols.

A plug-in names the Protocol it depends on, never `node.Node`: `Node` satisfies each of them
structurally, tests pass small fakes, and no plug-in module imports the module that wires it (so the
node package has no import cycles). Components that are None until `Node.start` has opened the store
(chain, mempool, host, driver) are typed as optional here too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pocl.consensus.pocl.execution import PoclExecution
from pocl.genesis.schema import Genesis
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import ChainParams
from pocl.node.chain import Chain
from pocl.node.config import Config
from pocl.node.consensus_driver import ConsensusDriver
from pocl.node.events import NodeEventListener
from pocl.node.mempool import AddResult, Mempool
from pocl.node.readiness import Readiness
from pocl.p2p.host import Host


class EventSource(Protocol):
    def subscribe(self, listener: NodeEventListener) -> Callable[[], None]:
        """Call `listener` with every node event from now on; returns the call that unsubscribes."""
        ...


class TxSubmitter(Protocol):
    def submit_tx(self, raw: bytes) -> AddResult:
        """Admit a signed tx to the mempool and gossip it (as `POST /txs` does)."""
        ...


class ChainReader(Protocol):
    """The committed chain and the pending txs."""

    chain: Chain | None
    mempool: Mempool | None


class TxNode(ChainReader, TxSubmitter, Protocol):
    """The tx routes: look txs up (committed or pending), submit them."""


class PeerHost(Protocol):
    """The P2P host (None until started): connected peers, bans."""

    host: Host | None


class NodeStatusSource(ChainReader, PeerHost, Protocol):
    """What `/status` and `/peers` report about the running node."""

    genesis: Genesis
    config: Config
    node_key: PrivateKey
    consensus_key: PrivateKey | None  # signs proposals and votes
    account_key: PrivateKey | None  # the operator account
    driver: ConsensusDriver | None
    syncing: bool
    started_at: float

    def readiness(self) -> Readiness:
        """Ready for traffic, or why not (`GET /ready`)."""
        ...


class StreamNode(ChainReader, EventSource, Protocol):
    """The WebSocket event stream: live node events, stored blocks to replay, the chain id."""

    genesis: Genesis


class RpcNode(NodeStatusSource, TxNode, StreamNode, Protocol):
    """The core RPC routes: chain reads, tx submission, node status, peers, the event stream."""


class MinerStatus(Protocol):
    def status_json(self) -> dict[str, Any]: ...


class MiningControl(Protocol):
    """`node.mining_switch.MiningSwitch`: mining on and off at run time."""

    def state(self) -> dict[str, Any]: ...

    async def turn_on(self) -> dict[str, Any]: ...

    async def turn_off(self) -> dict[str, Any]: ...


class PoclReader(ChainReader, Protocol):
    """The PoCL routes: round records and global models from the committed state, the local miner."""

    pocl: PoclExecution
    miner: MinerStatus | None
    mining_switch: MiningControl


class MetricsNode(ChainReader, PeerHost, EventSource, Protocol):
    """Metrics: gauges read at scrape time, history folded from node events."""

    driver: ConsensusDriver | None
    syncing: bool


class MinerNode(ChainReader, TxSubmitter, EventSource, Protocol):
    """The miner reads the committed PoCL state and submits its round txs."""

    genesis: Genesis
    params: ChainParams
    pocl: PoclExecution
    syncing: bool
