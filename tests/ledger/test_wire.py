"""Wire format: golden vectors (a format change must fail here), round-trips and strict decoding."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pocl.ledger import codec
from pocl.ledger.arrays import array_from_plain, array_to_plain
from pocl.ledger.block import (
    VOTE_PRECOMMIT,
    Block,
    Commit,
    CommitSig,
    DuplicateVoteEvidence,
    Header,
    Vote,
    txs_root,
    vote_sign_bytes,
)
from pocl.ledger.codec import CodecError
from pocl.ledger.hashing import TAG_MERKLE_LEAF, TAG_MERKLE_NODE, TAG_TX, TAG_TXS_ROOT, TAG_VOTE, tagged_hash
from pocl.ledger.keys import KeyFormatError, PrivateKey, address_of, format_address, parse_address, verify
from pocl.ledger.merkle import merkle_root
from pocl.ledger.params import ChainParams
from pocl.ledger.state import State
from pocl.ledger.tx import SignedTx, TransferPayload, Tx, make_transfer, sign_tx

from tests.support.ledger_kit import ALICE, BOB, CHAIN_ID, VAL1, genesis_accounts, key

# ---------------------------------------------------------------------------- golden vectors

GOLDEN_TX = (
    "929701a9706f636c2d74657374a87472616e73666572c420990f216b91646b3dc8a29652a499002db2be45da536a9e"
    "7651f8e6d66126e1e7070a92c4144cefd9812d33878863c63d2bcefbeaffaaf0ac7ecd3039c440592945aaded3947d"
    "a2317426b30badae99839be73279ea634ff83b5bc4c9307a89c60434e2c24d0629fb4c0566694ee19316fb16aeb7ff"
    "5b0072aa996351c706"
)
GOLDEN_TX_HASH = "a09d1c2ce714e5dae7657584ba4aca3a9c7a442d1f1d82736b4edab010acfc6b"
GOLDEN_VOTE = (
    "97a9706f636c2d74657374020501c420000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e"
    "1fc420b898ca8ec9cb55dcd0c6cb4ed16199d7df76710cd3b03bc91c95c9a4d758693bc4400c939e01a00875d70fa1"
    "b237ba799227245a9c557601b4b86200859d078713026b88323cfe6f86ebcc165c80d884950167fd6a1c72afe556ca"
    "9be21dc975f502"
)
GOLDEN_COMMIT = (
    "940501c420000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f9192c420b898ca8ec9cb"
    "55dcd0c6cb4ed16199d7df76710cd3b03bc91c95c9a4d758693bc4400c939e01a00875d70fa1b237ba799227245a9c"
    "557601b4b86200859d078713026b88323cfe6f86ebcc165c80d884950167fd6a1c72afe556ca9be21dc975f502"
)
GOLDEN_COMMIT_HASH = "621c280c15694449333efc166ea860c8c7e3740b8939bdab7a89fea009909ccc"
GOLDEN_BLOCK_HASH = "77dfd31a4c1ce291407c700305ec4c757bdc5f78b2bfbd7562bd5380cca770e4"
# Re-pinned for issue 14: the genesis validators' consensus keys enter state as role records.
GOLDEN_GENESIS_ROOT = "25a8281fe7f26649fa38e29e6a09e9e332633a941e5294a55b6c62ffcf2d1b18"

BLOCK_HASH = bytes(range(32))
PROPOSER = key("proposer")  # a fixed header proposer for the wire goldens


def golden_vote() -> Vote:
    sig = VAL1.sign(TAG_VOTE, vote_sign_bytes(CHAIN_ID, VOTE_PRECOMMIT, 5, 1, BLOCK_HASH))
    return Vote(CHAIN_ID, VOTE_PRECOMMIT, 5, 1, BLOCK_HASH, VAL1.pubkey, sig)


def golden_block() -> Block:
    stx = make_transfer(ALICE, CHAIN_ID, 7, BOB.address, 12345, 10)
    vote = golden_vote()
    commit = Commit(5, 1, BLOCK_HASH, [CommitSig(vote.validator, vote.signature)])
    header = Header(
        6,
        1_700_000_000_000,
        b"\x11" * 32,
        PROPOSER.address,
        txs_root([stx.raw]),
        b"\x22" * 32,
        commit.hash,
        b"",
    )
    return Block(header, [stx.raw], commit)


def test_golden_tx() -> None:
    stx = make_transfer(ALICE, CHAIN_ID, 7, BOB.address, 12345, 10)
    assert stx.raw.hex() == GOLDEN_TX
    assert stx.hash.hex() == GOLDEN_TX_HASH
    assert stx.hash == tagged_hash(TAG_TX, bytes.fromhex(GOLDEN_TX))
    decoded = SignedTx.decode(bytes.fromhex(GOLDEN_TX))
    assert decoded == stx
    assert decoded.verify_signature()
    assert decoded.sign_bytes == stx.tx.encode()
    assert TransferPayload.from_list(decoded.tx.payload) == TransferPayload(BOB.address, 12345)


def test_golden_vote_commit_block() -> None:
    vote = golden_vote()
    assert vote.encode().hex() == GOLDEN_VOTE
    assert Vote.decode(bytes.fromhex(GOLDEN_VOTE)) == vote
    assert vote.verify_signature()
    block = golden_block()
    assert block.last_commit is not None
    assert block.last_commit.encode().hex() == GOLDEN_COMMIT
    assert block.last_commit.hash.hex() == GOLDEN_COMMIT_HASH
    assert block.hash.hex() == GOLDEN_BLOCK_HASH
    assert Block.decode(block.encode()) == block
    assert block.last_commit.votes(CHAIN_ID)[0] == vote


def test_golden_genesis_state_root() -> None:
    state = State.from_genesis(ChainParams(), genesis_accounts(), CHAIN_ID)
    assert state.state_root().hex() == GOLDEN_GENESIS_ROOT


def test_hash_domains_and_merkle() -> None:
    assert tagged_hash(b"a", b"bc") != tagged_hash(b"ab", b"c")
    assert merkle_root([b"x"]) != merkle_root([b"x", b"x"])
    assert merkle_root([b"a", b"b", b"c"]) != merkle_root([b"a", b"b"])
    assert txs_root([]) == txs_root([])


# ---------------------------------------------------------------------------- strict decoding


@pytest.mark.parametrize(
    "bad",
    [
        msgpack.packb({"a": 1}),  # map
        msgpack.packb([1, 2.5]),  # float
        msgpack.packb([1, 2]) + b"\x00",  # trailing bytes
        b"\xcd\x00\x05",  # uint16 for 5: non-minimal
        b"\xc1",  # never-used byte
        b"\x92\x01",  # truncated
        msgpack.packb(msgpack.ExtType(1, b"x")),  # ext type
    ],
)
def test_codec_rejects_non_canonical(bad: bytes) -> None:
    with pytest.raises(CodecError):
        codec.decode(bad)


def _tx_list() -> list:
    return make_transfer(ALICE, CHAIN_ID, 1, BOB.address, 5, 1).to_list()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda v: [*v, b""],  # extra field
        lambda v: [v[0]],  # missing field
        lambda v: [v[0] + [1], v[1]],  # extra tx field
        lambda v: [[v[0][0], v[0][1], v[0][2], v[0][3], "7", v[0][5], v[0][6]], v[1]],  # nonce as str
        lambda v: [[True, *v[0][1:]], v[1]],  # bool for int
        lambda v: [[v[0][0], b"chain", *v[0][2:]], v[1]],  # bytes for str
        lambda v: [[*v[0][:3], v[0][3][:31], *v[0][4:]], v[1]],  # short pubkey
        lambda v: [v[0], v[1][:63]],  # short signature
        lambda v: v[0],  # bare tx
    ],
)
def test_signed_tx_rejects_wrong_shapes(mutate) -> None:
    raw = codec.encode(mutate(_tx_list()))
    with pytest.raises(CodecError):
        SignedTx.decode(raw)


def test_signed_tx_rejects_float_map_trailing_noncanonical() -> None:
    good = make_transfer(ALICE, CHAIN_ID, 1, BOB.address, 5, 1)
    v = good.to_list()
    v[0][6] = [BOB.address, 5.0]
    with pytest.raises(CodecError):
        SignedTx.decode(msgpack.packb(v, use_bin_type=True))
    v[0][6] = {"to": BOB.address}
    with pytest.raises(CodecError):
        SignedTx.decode(msgpack.packb(v, use_bin_type=True))
    with pytest.raises(CodecError):
        SignedTx.decode(good.raw + b"\x00")
    # nonce 1 encoded as uint8 (0xcc 0x01) instead of a positive fixint: same value, non-canonical
    idx = good.raw.index(bytes([0x01, 0x01, 0x92]))  # nonce=1, fee=1, payload fixarray(2)
    noncanon = good.raw[:idx] + b"\xcc\x01" + good.raw[idx + 1 :]
    assert msgpack.unpackb(noncanon) == msgpack.unpackb(good.raw)
    with pytest.raises(CodecError):
        SignedTx.decode(noncanon)
    with pytest.raises(CodecError):
        SignedTx.decode(good.raw, max_size=10)


def test_block_and_vote_reject_extra_fields() -> None:
    block = golden_block()
    with pytest.raises(CodecError):
        Block.decode(codec.encode([*block.to_list(), 1]))
    with pytest.raises(CodecError):
        Vote.decode(codec.encode([*golden_vote().to_list()[:-1], b"\x00" * 63]))
    with pytest.raises(CodecError):
        Header.decode(codec.encode(block.header.to_list()[:-1]))


# ---------------------------------------------------------------------------- round trips

plain_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(plain_values)
def test_codec_round_trip(value) -> None:
    raw = codec.encode(value)
    assert codec.decode(raw) == value
    assert codec.encode(codec.decode(raw)) == raw


@settings(max_examples=40, deadline=None)
@given(
    nonce=st.integers(0, 2**63 - 1),
    fee=st.integers(0, 2**63 - 1),
    amount=st.integers(-(2**63), 2**64 - 1),
    to=st.binary(min_size=20, max_size=20),
    chain=st.text(max_size=64),
)
def test_tx_round_trip(nonce: int, fee: int, amount: int, to: bytes, chain: str) -> None:
    stx = make_transfer(ALICE, chain, nonce, to, amount, fee)
    back = SignedTx.decode(stx.raw)
    assert back == stx and back.raw == stx.raw and back.hash == stx.hash
    assert back.verify_signature()
    assert back.sign_bytes == stx.tx.encode()


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 2**63), r=st.integers(0, 2**31), t=st.integers(0, 2**63), n=st.integers(0, 4))
def test_block_round_trip(h: int, r: int, t: int, n: int) -> None:
    txs = [bytes([i]) * (i + 1) for i in range(n)]
    commit = Commit(h, r, b"\x01" * 32, [CommitSig(VAL1.pubkey, b"\x02" * 64)] * n)
    block = Block(Header(h, t, b"", PROPOSER.address, txs_root(txs), b"\x00" * 32, b"", b"ri"), txs, commit)
    assert Block.decode(block.encode()) == block
    assert Block.decode(block.encode()).hash == block.hash


def test_evidence_round_trip() -> None:
    a = golden_vote()
    sig = VAL1.sign(TAG_VOTE, vote_sign_bytes(CHAIN_ID, VOTE_PRECOMMIT, 5, 1, b"\x09" * 32))
    b = Vote(CHAIN_ID, VOTE_PRECOMMIT, 5, 1, b"\x09" * 32, VAL1.pubkey, sig)
    ev = DuplicateVoteEvidence(a, b)
    assert DuplicateVoteEvidence.decode(ev.encode()) == ev


# ---------------------------------------------------------------------------- keys / signatures / arrays


def test_keys_addresses_and_domain_separation() -> None:
    k = PrivateKey.from_seed_text("x")
    assert k == PrivateKey.from_seed_text("x") and k.address == address_of(k.pubkey)
    assert parse_address(format_address(k.address)) == k.address
    with pytest.raises(KeyFormatError):
        parse_address("0x1234")
    with pytest.raises(KeyFormatError):
        parse_address("zz" * 20)
    sig = k.sign(b"tag-a", b"msg")
    assert verify(k.pubkey, b"tag-a", b"msg", sig)
    assert not verify(k.pubkey, b"tag-b", b"msg", sig)
    assert not verify(k.pubkey, b"tag-a", b"msh", sig)
    assert not verify(k.pubkey[:31], b"tag-a", b"msg", sig)
    assert "seed" not in repr(k) and k.seed.hex() not in repr(k)


def test_tx_signature_is_domain_separated_and_sender_checked() -> None:
    stx = make_transfer(ALICE, CHAIN_ID, 0, BOB.address, 5, 1)
    # a vote-tag signature over the same bytes must not verify as a tx signature
    forged = SignedTx(stx.tx, ALICE.sign(TAG_VOTE, stx.tx.encode()))
    assert not forged.verify_signature()
    with pytest.raises(ValueError):
        sign_tx(BOB, stx.tx)
    other = Tx(stx.tx.version, stx.tx.chain_id, stx.tx.kind, BOB.pubkey, 0, 1, stx.tx.payload)
    assert not SignedTx(other, stx.signature).verify_signature()


def test_arrays_plain_shape() -> None:
    arr = np.arange(6, dtype="<f4").reshape(2, 3)
    name, shape, data = array_to_plain(arr)
    assert name == "f4" and shape == [2, 3] and data == arr.tobytes()
    back = array_from_plain(codec.decode(codec.encode(array_to_plain(arr))))
    assert back.dtype == arr.dtype and np.array_equal(back, arr)


@pytest.mark.parametrize(
    "plain",
    [
        ["f2", [1], b"\x00\x00"],  # dtype not allowed
        ["O", [1], b"\x00" * 8],  # object dtype: never
        ["f4", [2], b"\x00" * 4],  # size mismatch
        ["f4", [-1], b""],  # negative dim
        ["f4", [2**40, 2**40], b""],  # huge: rejected before allocation
        ["f4", [1], np.array([np.nan], "<f4").tobytes()],  # NaN
        ["f4", [1]],  # wrong arity
    ],
)
def test_arrays_reject(plain: list) -> None:
    with pytest.raises(CodecError):
        array_from_plain(plain)


def reference_txs_root(txs: list[bytes]) -> bytes:
    """The txs_root as DESIGN §3 defines it, written with the generic tagged hash."""
    if not txs:
        return tagged_hash(TAG_TXS_ROOT, tagged_hash(TAG_MERKLE_LEAF, b""))
    level = [tagged_hash(TAG_MERKLE_LEAF, t) for t in txs]
    while len(level) > 1:
        nxt = [tagged_hash(TAG_MERKLE_NODE, level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        level = nxt + level[len(level) - 1 :] if len(level) % 2 else nxt
    return tagged_hash(TAG_TXS_ROOT, level[0])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=30), max_size=40))
def test_txs_root_matches_the_specification(txs: list[bytes]) -> None:
    assert txs_root(txs) == reference_txs_root(txs)
