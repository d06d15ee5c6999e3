"""A chain in one process: real genesis state, the real executor with PoCL's hooks, one proposer.

Blocks are executed exactly as a node executes a committed block (`Executor.execute_block`, strict:
an invalid tx is an error, since the simulator's miners only send what a node's miner would send).
There is no BFT, network or store; model blobs written by finalization are kept in a dict, as the store
keeps them with the block.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from pocl.consensus.pocl.execution import PoclExecution, build_executor
from pocl.consensus.pocl.params import PoclParams
from pocl.ledger.codec import Struct
from pocl.ledger.executor import BlockResult
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import ChainParams, GenesisAccount
from pocl.ledger.state import State
from pocl.ledger.tx import TX_VERSION, SignedTx, Tx, sign_tx
from pocl.ledger.tx_kinds import BlockContext

BLOCK_INTERVAL_MS = 1_000  # block time only enters the state as a number; any fixed step will do
# No validator's consensus address: the executor finds no operator for it, so block fees are burned.
PROPOSER = hashlib.sha256(b"pocl/simulation/proposer").digest()[:20]


@dataclasses.dataclass(frozen=True)
class SimBlock:
    height: int
    txs: list[bytes]  # signed txs as executed
    result: BlockResult


class InProcessChain:
    """The one in-process chain: the simulator runs on it, and so do the protocol's golden tests."""

    def __init__(
        self,
        chain_id: str,
        pocl_params: PoclParams,
        accounts: list[GenesisAccount],
        proposer: bytes = PROPOSER,
    ) -> None:
        self.chain_id = chain_id
        self.proposer = proposer
        self.params = ChainParams()
        self.pocl = PoclExecution(pocl_params, self.params)
        self.executor = build_executor(self.pocl)
        genesis = State.from_genesis(self.params, accounts, chain_id)
        self._models: dict[bytes, bytes] = {}
        self.state = State.from_entries(self.params, chain_id, genesis.entries_snapshot(), self._models.get)
        self.blocks: list[SimBlock] = []
        self._nonces: dict[bytes, int] = {}

    @property
    def next_height(self) -> int:
        return self.state.height + 1

    def sign(self, key: PrivateKey, kind: str, payload: Struct) -> SignedTx:
        """A signed tx with the sender's next nonce and the minimum fee (what a node's miner submits)."""
        nonce = self._nonces.get(key.address, 0)
        self._nonces[key.address] = nonce + 1
        tx = Tx(TX_VERSION, self.chain_id, kind, key.pubkey, nonce, self.params.min_fee, payload.to_list())
        return sign_tx(key, tx)

    def offer(self, key: PrivateKey, kind: str, payload: Struct) -> SignedTx | None:
        """Sign and check a tx as a node's mempool would (against the state the next block starts from);
        None, with the nonce given back, when the chain refuses it (the miner's tx never gets in)."""
        stx = self.sign(key, kind, payload)
        if self.executor.check_tx(self.state, stx) is not None:
            self._nonces[key.address] -= 1
            return None
        return stx

    def execute(self, txs: list[SignedTx]) -> SimBlock:
        work = self.state.copy()
        h = work.height + 1
        ctx = BlockContext(h, BLOCK_INTERVAL_MS * h, self.proposer, self.chain_id, work.params)
        raw = [t.raw for t in txs]
        result = self.executor.execute_block(work, ctx, raw)
        self._models.update(work.delta().models)
        self.state = work.commit()
        block = SimBlock(h, raw, result)
        self.blocks.append(block)
        return block

    def global_weights(self, model_hash: bytes) -> list[Any]:
        return self.pocl.global_weights(self.state, model_hash)
