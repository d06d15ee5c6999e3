"""Golden scenario: the state roots and global-model hashes of a fixed multi-round run are pinned.

A refactor that moves code must leave these bytes unchanged; a protocol change that alters them must
update the pins on purpose (and say so in its commit). The run goes through the real ledger executor:
signed txs (PoCL and core kinds) in blocks, begin/end-block hooks, finalization, rewards and slashing.
"""

from __future__ import annotations

import hashlib

import pytest
from pocl.consensus.pocl.events import Jailed, RoundFinalized, Slashed
from pocl.ledger.keys import PrivateKey
from pocl.ledger.tx import make_register_miner, make_stake, make_transfer

from tests.support.pocl_chain import Chain, key
from tests.support.pocl_scenario import HONEST, KNN, WITHHOLD, make_params, make_scenario, perturbed

ROUNDS = 5

# sha256 over every block's state root, in height order, and the global-model hash after each round.
# Pins history (each change on purpose, with its reason):
# - issue 11: the roots of the node's executor (with the signing-validator record); the move itself
#   changed nothing (checked against the pre-move tree);
# - issue 12: exact fixed-point canonical inference (different accuracies and verdicts), the whole stake
#   slashed for prediction fraud, downtime counters and jailing in state; the scenario grew to 5 rounds
#   and the outsider stakes enough to become a miner that never commits (jailed after round 5); the
#   test chain now makes the withholder withhold (it revealed before); the scenario's cheaply trained
#   weights no longer depend on the BLAS thread count another test left behind;
# - issue 12: seed from the voters' revealed salts, label commitments bound to chain/round/sender,
#   exhaustive verification, clip bound from every distinct revealed update, known models cannot win;
# - issue 12: hidden shards (a SHARD phase after COMMIT: one more block per round, 32 in all; commits
#   carry a shard commitment; the fingerprint index of shards and revealed weights in state); every
#   miner draws a fresh shard each round (a reused shard is now refused); G_{r-1}'s baseline, no-op
#   models cannot win, pay for verified gain and informative shards only. Rounds 1, 2 and 4 aggregate
#   the same winners as before (same model hashes); rounds 3 and 5 differ (new shards, new rules).
# - issue 14: explicit roles. The miners' registrations enter state as role records (genesis), and the
#   outsider registers as a miner after staking (staking alone no longer makes one); the test chain's
#   proposer is no validator, so fees are burned instead of credited to it. Same blocks, same rounds,
#   same model hashes: only the roots changed.
# - issue 16: a final round's per-miner entries (commit, shard, vote; predict ones already were) are
#   deleted at finalization, so state grows by one record per round. Same blocks, rounds and model
#   hashes: only the roots changed.
GOLDEN_BLOCKS = 32
GOLDEN_ROOTS_DIGEST = "1f4ab420c2ff573ca1e2e3ad092866163a3bd624be7f661d5bd4af1aee1d2fcd"
GOLDEN_MODEL_HASHES = [
    "b876965f35a10939613b3e59bd91f95d9017ce22bb0595ea1e96dfc217722881",
    "617cf85e6ec7966c3ba1b9d465f1a8437351d16d7938d19ad067f9f3645101e3",
    "e629078e3e79e7991356a9a7d0059a181889fda9b5fceef7487c73caeb45eb4e",
    "a397d9aec1443fe761c8a75b182050ec23080c0311eeeaf3fa5f86433a40a0ff",
    "17380ce5d55d7bebfa8a237c0cf3ff99198e5eb5b16fbfd0551abdd3f6ff6bb9",
]
GOLDEN_FINAL_ROOT = "8e39df373bc4319bb8b1906c26d6a3af297087aa877cf0c3ce04d0ede10d3847"


def run_golden() -> tuple[Chain, list[str]]:
    s = make_scenario([HONEST, HONEST, KNN, HONEST, WITHHOLD], make_params(first_round_height=2))
    c = Chain(s, outsiders=2)
    outsider: PrivateKey = key(100)
    models: list[str] = []
    nonce = 0
    for h in range(1, 200):
        txs = c.miner_txs()
        if h % 3 == 0:  # core kinds interleaved with the rounds
            to = key(101).address
            txs.append(make_transfer(outsider, "pocl-test", nonce, to, 10 + h, 1))
            nonce += 1
        if h == 7:
            txs.append(make_stake(outsider, "pocl-test", nonce, 5_000, 1))  # joins as a miner, never commits
            txs.append(make_register_miner(outsider, "pocl-test", nonce + 1, 1))  # staking alone: no miner
            nonce += 2
        seen = len(c.events)
        c.block(txs)
        for e in c.events[seen:]:
            if isinstance(e, RoundFinalized):
                models.append(c.state.global_model_hash.hex())
                for m in s.miners:  # miners train on: every round brings new weights
                    if m.behaviour == HONEST:
                        m.weights = perturbed(m.weights, 1_000 * len(models) + m.index, 0.01)
        if len(models) == ROUNDS:
            break
    return c, models


@pytest.fixture(scope="module")
def golden() -> tuple[Chain, list[str]]:
    return run_golden()


def test_golden_state_roots(golden: tuple[Chain, list[str]]) -> None:
    c, _ = golden
    digest = hashlib.sha256(b"".join(c.roots)).hexdigest()
    assert (len(c.roots), c.roots[-1].hex(), digest) == (
        GOLDEN_BLOCKS,
        GOLDEN_FINAL_ROOT,
        GOLDEN_ROOTS_DIGEST,
    ), f"state roots changed: {len(c.roots)} blocks, last {c.roots[-1].hex()}, digest {digest}"


def test_golden_global_models(golden: tuple[Chain, list[str]]) -> None:
    _, models = golden
    assert models == GOLDEN_MODEL_HASHES, f"global models changed: {models}"


def test_golden_scenario_covers_slashing_and_jailing(golden: tuple[Chain, list[str]]) -> None:
    """The pins guard the rules only while the scenario exercises them."""
    c, _ = golden
    slashed = [e for e in c.events if isinstance(e, Slashed)]
    jailed = [e for e in c.events if isinstance(e, Jailed)]
    assert [(e.kind, e.address) for e in slashed] == [
        ("withhold", c.s.miners[4].address),
        ("prediction_fraud", c.s.miners[2].address),  # the k-NN faker
    ]
    assert [e.address for e in jailed] == [key(100).address]  # the staker who never commits


def test_golden_roots_do_not_depend_on_blas_threads(golden: tuple[Chain, list[str]]) -> None:
    """Every value that enters state is bit-identical whatever the BLAS thread count (issue 12, item 1)."""
    from threadpoolctl import threadpool_limits

    c, models = golden
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            again, again_models = run_golden()
        assert (again.roots, again_models) == (c.roots, models), f"{threads} BLAS thread(s) changed state"


if __name__ == "__main__":
    c, models = run_golden()
    print(len(c.roots), c.roots[-1].hex(), hashlib.sha256(b"".join(c.roots)).hexdigest(), models)
