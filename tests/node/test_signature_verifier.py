"""The node's parallel signature verifier: blocks large enough to have their signatures checked on all cores
give the same verdicts as in-line verification, one by one."""

from __future__ import annotations

import pytest
from pocl.ledger import errors
from pocl.ledger.errors import BlockError
from pocl.ledger.executor import Executor
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import ChainParams, GenesisAccount
from pocl.ledger.state import State
from pocl.ledger.tx import SignedTx, make_transfer
from pocl.ledger.tx_kinds import BlockContext
from pocl.node.signature_verifier import PARALLEL_VERIFY_MIN, ParallelSignatureVerifier

CHAIN = "parallel-verify"
SENDERS = [PrivateKey.from_seed_text(f"pv-{i}") for i in range(PARALLEL_VERIFY_MIN * 2)]
SINK = PrivateKey.from_seed_text("pv-sink").address
VERIFIER = ParallelSignatureVerifier(workers=2)  # threads even on a one-core machine


def test_verifier_vouches_only_for_valid_signatures() -> None:
    stxs = [SignedTx.decode(raw) for raw in block_txs()]
    bad = bytearray(stxs[3].raw)
    bad[-1] ^= 1
    stxs[3] = SignedTx.decode(bytes(bad))
    assert VERIFIER(stxs) == {s.hash for i, s in enumerate(stxs) if i != 3}
    assert VERIFIER(stxs[: PARALLEL_VERIFY_MIN - 1]) == frozenset()  # small batches: verified in-line


def state() -> State:
    return State.from_genesis(ChainParams(), [GenesisAccount(k.address, 10_000) for k in SENDERS], CHAIN)


def block_txs() -> list[bytes]:
    return [make_transfer(k, CHAIN, 0, SINK, 5, 1).raw for k in SENDERS]


def run(txs: list[bytes], skip_invalid: bool = False):
    st = state().copy()
    ctx = BlockContext(1, 1, SINK, CHAIN, st.params)
    return Executor(verify_signatures=VERIFIER).execute_block(st, ctx, txs, skip_invalid=skip_invalid)


def test_large_valid_block_executes_fully() -> None:
    result = run(block_txs())
    assert len(result.receipts) == len(SENDERS)
    serial = state().copy()
    ex = Executor()
    ctx = BlockContext(1, 1, SINK, CHAIN, serial.params)
    ex.begin_block(serial, ctx)
    for i, raw in enumerate(block_txs()):
        ex.apply_tx(serial, ex.decode_tx(raw, serial.params), ctx, i)
    ex.end_block(serial, ctx)
    assert result.state_root == serial.state_root()


def test_one_bad_signature_rejects_the_block() -> None:
    txs = block_txs()
    bad = bytearray(txs[100])
    bad[-1] ^= 1
    txs[100] = bytes(bad)
    with pytest.raises(BlockError) as err:
        run(txs)
    assert err.value.tx_index == 100 and err.value.tx_error.code == errors.BAD_SIGNATURE


def test_proposer_drops_only_the_bad_signature() -> None:
    txs = block_txs()
    bad = bytearray(txs[7])
    bad[-1] ^= 1
    txs[7] = bytes(bad)
    result = run(txs, skip_invalid=True)
    assert [i for i, _ in result.rejected] == [7]
    assert len(result.receipts) == len(SENDERS) - 1
