"""A PoCL chain in memory: real signed miner txs through the real executor (begin/end-block hooks,
finalization, rewards, slashing), block by block, with each block's state root and events kept.

The scenario's miners are staked and registered miners at genesis; outsiders hold a balance only."""

from __future__ import annotations

from collections.abc import Container, Sequence

from pocl.consensus.pocl.records import PHASE_COMMIT
from pocl.consensus.pocl.txs import KIND_POCL_COMMIT, KIND_POCL_PREDICT, KIND_POCL_SHARD, KIND_POCL_VOTE
from pocl.ledger.codec import Struct
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import GenesisAccount
from pocl.ledger.tx import SignedTx
from pocl.ledger.tx_kinds import BlockContext
from pocl.node.simulation.chain import InProcessChain

from tests.support.pocl_scenario import (
    CHAIN_ID,
    SHARD_WITHHOLDER,
    WITHHOLD,
    Scenario,
    commit_payload,
    predict_payload,
    shard_payload,
    vote_payload,
)

STAKE = 5_000
BALANCE = 1_000_000
FEE = 1
PROPOSER = b"\xee" * 20


def key(i: int) -> PrivateKey:
    return PrivateKey.from_seed_text(f"miner-{i}")


class Chain(InProcessChain):
    """The simulator's in-process chain, driven by a test scenario's miners; keeps roots and events."""

    def __init__(self, s: Scenario, outsiders: int = 1, extra: Sequence[GenesisAccount] = ()) -> None:
        """`outsiders` funded accounts key(100), key(101), ...; `extra` more genesis accounts as given."""
        accounts = [
            GenesisAccount(key(m.index).address, BALANCE, STAKE, key(m.index).pubkey, miner=True)
            for m in s.miners
        ]
        accounts += [GenesisAccount(key(100 + i).address, BALANCE, 0, None) for i in range(outsiders)]
        accounts += extra
        super().__init__(CHAIN_ID, s.params, accounts, proposer=PROPOSER)
        assert self.params.min_fee == FEE  # the chain signs every tx with the minimum fee
        self.s = s
        self.roots: list[bytes] = []
        self.events: list = []

    def tx(self, k: PrivateKey, kind: str, payload: Struct) -> SignedTx:
        return self.sign(k, kind, payload)

    def block(self, txs: list[SignedTx]) -> None:
        result = self.execute(txs).result
        self.roots.append(result.state_root)
        self.events += result.events

    def miner_txs(self, hold: Container[tuple[bytes, str]] = ()) -> list[SignedTx]:
        """What honest-or-not miners send in the next block, given the open round's phase. `hold`:
        (address, phase name) pairs whose tx is neither built nor signed this block (a miner that waits,
        or never acts in that phase)."""
        s, st = self.s, self.state.copy()
        self.pocl.begin_block(st, BlockContext(st.height + 1, 0, PROPOSER, CHAIN_ID, st.params))
        rec = self.pocl.open_record(st)
        if rec is None:
            return []
        if rec.round != s.round:  # new shards (a replayed one is refused); free riders take G_{r-1}
            s.enter_round(rec.round, self.pocl.global_weights(st, rec.prev_model_hash))
        s.round = rec.round
        out = []
        for m in s.miners:
            a, k = m.address, key(m.index)
            if (a, rec.phase_name) in hold:
                continue
            if rec.phase == PHASE_COMMIT and a in rec.eligible and a not in rec.committers:
                out.append(self.tx(k, KIND_POCL_COMMIT, commit_payload(s, m)))
            elif rec.phase_name == "shard" and a in rec.committers and a not in rec.shard_owners:
                if m.behaviour == SHARD_WITHHOLDER:  # committed, never opens its shard
                    continue
                out.append(self.tx(k, KIND_POCL_SHARD, shard_payload(s, m)))
            elif rec.phase_name == "predict" and a in rec.shard_owners and a not in rec.predictors:
                if m.behaviour == WITHHOLD:  # committed, never reveals
                    continue
                out.append(self.tx(k, KIND_POCL_PREDICT, predict_payload(s, m, rec.shard_owners)))
            elif rec.phase_name == "vote" and a in rec.revealed and a not in rec.voters:
                data = self.pocl.round_data(st, rec)
                out.append(self.tx(k, KIND_POCL_VOTE, vote_payload(s, m, rec, data.predictions)))
        return out
