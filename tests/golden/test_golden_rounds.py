"""Golden scenario: the state roots and global-model hashes of a fixed multi-round run are pinned.

A refactor that moves code must leave these bytes unchanged; a protocol change that alters them must
update the pins on purpose (and say so in its commit). The run goes through the real ledger executor:
signed txs (PoCL and core kinds) in blocks, begin/end-block hooks, finalization, rewards and slashing.
"""

from __future__ import annotations

import hashlib

import pytest
from pocl.consensus.pocl.events import RoundFinalized
from pocl.ledger.keys import PrivateKey
from pocl.ledger.tx import make_stake, make_transfer

from tests.support.pocl_chain import Chain, key
from tests.support.pocl_scenario import HONEST, KNN, WITHHOLD, make_params, make_scenario, perturbed

ROUNDS = 3

# sha256 over every block's state root, in height order, and the global-model hash after each round.
# The roots are those of the node's executor (with the signing-validator record), as the node's
# `build_node_executor` produced them before the executor assemblies were merged into one.
GOLDEN_ROOTS_DIGEST = "21453c32aab3c4e12d0cd7be8200e212d80e4f01634b12a8cf229ab5c6c50b1a"
GOLDEN_MODEL_HASHES = [
    "2858199d2c00208ecba46fcf01f22093b189de50e8017b3e720f8827a8819882",
    "578f3179f19a784272185bac0e6bb7e003c807f75afce8c9e72e7bea41acafdb",
    "74933d7ba5086b4903640e2213e2358e20dfdfd31b603150341c7113f95dc108",
]
GOLDEN_FINAL_ROOT = "ec17265ad214c614611fb06c04b2ae7221797a9d57ce4a601133d24d18836bca"


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
            txs.append(make_stake(outsider, "pocl-test", nonce, 1_000, 1))
            nonce += 1
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
        13,
        GOLDEN_FINAL_ROOT,
        GOLDEN_ROOTS_DIGEST,
    ), f"state roots changed: {len(c.roots)} blocks, last {c.roots[-1].hex()}, digest {digest}"


def test_golden_global_models(golden: tuple[Chain, list[str]]) -> None:
    _, models = golden
    assert models == GOLDEN_MODEL_HASHES, f"global models changed: {models}"


if __name__ == "__main__":
    c, models = run_golden()
    print(len(c.roots), c.roots[-1].hex(), hashlib.sha256(b"".join(c.roots)).hexdigest(), models)
