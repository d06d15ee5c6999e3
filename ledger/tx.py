"""Transactions: wire format, hashing, signing and builders (DESIGN §4).

Wire format (canonical msgpack arrays, see `ledger.codec`):

    Tx       = [version, chain_id, kind, sender_pubkey, nonce, fee, payload]
    SignedTx = [Tx, signature]

* `signature` is Ed25519 by `sender_pubkey` over `Tx.encode()` tagged with `TAG_TX_SIG`
  (`PrivateKey.sign(TAG_TX_SIG, tx.encode())`); the chain id sits in the signed bytes, so a transaction
  cannot be replayed on another chain, and the per-account nonce stops replays on this one.
* `SignedTx.hash = tagged_hash(TAG_TX, SignedTx.encode())` identifies a transaction (mempool, tx index).
* `payload` is a kind-specific array; its shape is defined by the payload `Struct` that the executor's
  registry holds for the kind (`TransferPayload`, `StakePayload`, `UnstakePayload`,
  `DuplicateVoteEvidence`, `CreateValidatorPayload` for the core kinds; `miner.register` and
  `miner.unregister` carry an empty array). `SignedTx.decode` checks the envelope and canonical
  encoding; the payload is type-checked by the executor (`malformed_tx` on mismatch).

Public API:
    Tx, SignedTx (SignedTx.decode(raw), .raw, .hash, .sign_bytes, .verify_signature(), .sender_address)
    TransferPayload, StakePayload, UnstakePayload, CreateValidatorPayload, EmptyPayload
    sign_tx(key, tx) -> SignedTx
    make_transfer(key, chain_id, nonce, to, amount, fee) / make_stake / make_unstake / make_evidence
    make_create_validator(account_key, consensus_key, chain_id, nonce, fee)
    make_register_miner(key, chain_id, nonce, fee) / make_unregister_miner(key, chain_id, nonce, fee)
    proof_of_possession_message(chain_id, operator) -> bytes (signed by the consensus key, TAG_VALIDATOR_POP)
    KIND_* constants, RESERVED_KINDS, TX_VERSION, MAX_AMOUNT
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, ClassVar

import msgpack
import nacl.bindings
import nacl.exceptions
from pocl.ledger import codec
from pocl.ledger.block import DuplicateVoteEvidence
from pocl.ledger.codec import CodecError, Struct
from pocl.ledger.hashing import TAG_TX, TAG_TX_SIG, TAG_VALIDATOR_POP
from pocl.ledger.keys import ADDRESS_LEN, PUBKEY_LEN, SIGNATURE_LEN, PrivateKey, address_of

TX_VERSION = 1
MAX_AMOUNT = 2**63 - 1  # amounts, fees, nonces and balances must stay below 2**63
MAX_CHAIN_ID_LEN = 64
MAX_KIND_LEN = 32

KIND_TRANSFER = "transfer"
KIND_STAKE = "stake"
KIND_UNSTAKE = "unstake"
KIND_EVIDENCE = "evidence"
KIND_VALIDATOR_CREATE = "validator.create"
KIND_MINER_REGISTER = "miner.register"
KIND_MINER_UNREGISTER = "miner.unregister"
KIND_POCL_COMMIT = "pocl.commit"
KIND_POCL_SHARD = "pocl.shard"
KIND_POCL_PREDICT = "pocl.predict"
KIND_POCL_VOTE = "pocl.vote"
# Registered by PoCL (`consensus.pocl.execution`): the miner kinds need its min_miner_stake.
RESERVED_KINDS = (
    KIND_POCL_COMMIT,
    KIND_POCL_SHARD,
    KIND_POCL_PREDICT,
    KIND_POCL_VOTE,
    KIND_MINER_REGISTER,
    KIND_MINER_UNREGISTER,
)

_SIG_PREFIX = bytes([len(TAG_TX_SIG)]) + TAG_TX_SIG
_SIG_SUFFIX_LEN = 2 + SIGNATURE_LEN  # bin8 header (0xc4 0x40) + 64 signature bytes


@dataclasses.dataclass(frozen=True)
class Tx(Struct):
    version: int
    chain_id: str
    kind: str
    sender: bytes  # the sender's Ed25519 public key; the account is address_of(sender)
    nonce: int
    fee: int
    payload: Any  # kind-specific array, typed by the executor's registry

    BYTES_LEN: ClassVar[dict[str, int]] = {"sender": PUBKEY_LEN}
    MAX_LEN: ClassVar[dict[str, int]] = {"chain_id": MAX_CHAIN_ID_LEN, "kind": MAX_KIND_LEN}

    @property
    def sender_address(self) -> bytes:
        return address_of(self.sender)


@dataclasses.dataclass(frozen=True)
class SignedTx(Struct):
    tx: Tx
    signature: bytes

    BYTES_LEN: ClassVar[dict[str, int]] = {"signature": SIGNATURE_LEN}

    @classmethod
    def decode(cls, data: bytes, max_size: int = codec.DEFAULT_MAX_SIZE) -> SignedTx:
        """Decode canonical bytes; raises CodecError for anything else (maps, floats, trailing bytes...)."""
        raw = bytes(data)
        value = codec.unpack(raw, max_size)
        stx = _signed_tx_from_list(value)
        payload = value[0][6]  # the payload: no floats/odd types anywhere (envelope typed above)
        if type(payload) is list:
            for item in payload:
                if type(item) not in _FLAT_TYPES:
                    codec.check_value(item)
        else:
            codec.check_value(payload)
        # A fresh packer (not thread-safe to share); it costs next to nothing next to decoding (measured).
        if msgpack.Packer(use_bin_type=True).pack(value) != raw:
            raise CodecError("non-canonical encoding")
        stx.__dict__["_raw"] = raw  # cache: the canonical bytes are exactly the input
        return stx

    # Cached derived values live in __dict__ (the dataclass is frozen; eq/hash use fields only).
    # Plain properties instead of functools.cached_property, which takes a lock on every first access.

    @property
    def raw(self) -> bytes:
        """Canonical encoding (cached; equal to the decoded input)."""
        d = self.__dict__
        r = d.get("_raw")
        if r is None:
            r = d["_raw"] = self.encode()
        return r

    @property
    def hash(self) -> bytes:
        d = self.__dict__
        h = d.get("_hash")
        if h is None:
            h = d["_hash"] = _sha256(_TX_HASH_PREFIX + self.raw).digest()  # == tagged_hash(TAG_TX, raw)
        return h

    @property
    def sign_bytes(self) -> bytes:
        """`Tx.encode()`, sliced out of `raw` (fixarray header + tx + bin8 signature) to avoid re-encoding."""
        return self.raw[1:-_SIG_SUFFIX_LEN]

    @property
    def sender_address(self) -> bytes:
        d = self.__dict__
        a = d.get("_sender_address")
        if a is None:
            a = d["_sender_address"] = _sha256(self.tx.sender).digest()[:ADDRESS_LEN]  # == address_of
        return a

    def verify_signature(self) -> bool:
        try:
            nacl.bindings.crypto_sign_open(self.signature + _SIG_PREFIX + self.sign_bytes, self.tx.sender)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError, TypeError):
            return False
        return True


_new = object.__new__
_sha256 = hashlib.sha256
_TX_HASH_PREFIX = bytes([len(TAG_TX)]) + TAG_TX
# Leaf types msgpack can yield that codec.check_value accepts (decoded ints always fit its range).
_FLAT_TYPES = (bytes, str, int, bool, type(None))


def _is_int(v: Any) -> bool:
    return type(v) is int


def _signed_tx_from_list(value: Any) -> SignedTx:
    # Hand-written fast path of Struct.from_list for the hottest decode in the node (same checks).
    if type(value) is not list or len(value) != 2:
        raise CodecError("SignedTx: expected array of 2")
    txl, sig = value
    if type(sig) is not bytes or len(sig) != SIGNATURE_LEN:
        raise CodecError("SignedTx.signature: expected 64 bytes")
    if type(txl) is not list or len(txl) != 7:
        raise CodecError("Tx: expected array of 7")
    version, chain_id, kind, sender, nonce, fee, payload = txl
    if not (_is_int(version) and _is_int(nonce) and _is_int(fee)):
        raise CodecError("Tx: version, nonce and fee must be integers")
    if type(chain_id) is not str or len(chain_id) > MAX_CHAIN_ID_LEN:
        raise CodecError("Tx.chain_id: expected string of at most 64 characters")
    if type(kind) is not str or len(kind) > MAX_KIND_LEN:
        raise CodecError("Tx.kind: expected string of at most 32 characters")
    if type(sender) is not bytes or len(sender) != PUBKEY_LEN:
        raise CodecError("Tx.sender: expected 32-byte public key")
    # Bypass the frozen dataclass __init__ (object.__setattr__ per field): same fields, ~2x faster.
    tx = _new(Tx)
    tx.__dict__.update(
        version=version, chain_id=chain_id, kind=kind, sender=sender, nonce=nonce, fee=fee, payload=payload
    )
    stx = _new(SignedTx)
    stx.__dict__.update(tx=tx, signature=sig)
    return stx


# --------------------------------------------------------------------------- payloads


@dataclasses.dataclass(frozen=True)
class TransferPayload(Struct):
    to: bytes  # recipient address
    amount: int

    BYTES_LEN: ClassVar[dict[str, int]] = {"to": ADDRESS_LEN}

    @classmethod
    def from_list(cls, value: Any) -> TransferPayload:
        # fast path, same checks as Struct.from_list
        if type(value) is not list or len(value) != 2:
            raise CodecError("TransferPayload: expected array of 2")
        to, amount = value
        if type(to) is not bytes or len(to) != ADDRESS_LEN:
            raise CodecError("TransferPayload.to: expected 20-byte address")
        if type(amount) is not int:
            raise CodecError("TransferPayload.amount: expected integer")
        return cls(to, amount)


@dataclasses.dataclass(frozen=True)
class StakePayload(Struct):
    amount: int  # moved from balance to bonded stake

    @classmethod
    def from_list(cls, value: Any) -> StakePayload:
        return cls(_single_amount(cls.__name__, value))


@dataclasses.dataclass(frozen=True)
class UnstakePayload(Struct):
    amount: int  # moved from bonded stake to an unbonding entry

    @classmethod
    def from_list(cls, value: Any) -> UnstakePayload:
        return cls(_single_amount(cls.__name__, value))


@dataclasses.dataclass(frozen=True)
class CreateValidatorPayload(Struct):
    """`validator.create`: the operator (the tx sender) registers its consensus key. `proof` is the
    consensus key's signature over `proof_of_possession_message(chain_id, operator)`: nobody can register
    a key they do not hold (e.g. someone else's, to block its owner from registering it)."""

    consensus_pubkey: bytes
    proof: bytes

    BYTES_LEN: ClassVar[dict[str, int]] = {"consensus_pubkey": PUBKEY_LEN, "proof": SIGNATURE_LEN}


@dataclasses.dataclass(frozen=True)
class EmptyPayload(Struct):
    """No payload (`miner.register`, `miner.unregister`): encoded as an empty array."""


def proof_of_possession_message(chain_id: str, operator: bytes) -> bytes:
    """What a consensus key signs (under TAG_VALIDATOR_POP) to prove it belongs to `operator` on `chain_id`."""
    return codec.encode([chain_id, operator])


def _single_amount(name: str, value: Any) -> int:
    if type(value) is not list or len(value) != 1 or type(value[0]) is not int:
        raise CodecError(f"{name}: expected [amount]")
    return value[0]


# --------------------------------------------------------------------------- builders


def sign_tx(key: PrivateKey, tx: Tx) -> SignedTx:
    if tx.sender != key.pubkey:
        raise ValueError("tx.sender is not the signing key's public key")
    return SignedTx(tx, key.sign(TAG_TX_SIG, tx.encode()))


def _build(key: PrivateKey, chain_id: str, kind: str, nonce: int, fee: int, payload: Any) -> SignedTx:
    return sign_tx(key, Tx(TX_VERSION, chain_id, kind, key.pubkey, nonce, fee, payload))


def make_transfer(key: PrivateKey, chain_id: str, nonce: int, to: bytes, amount: int, fee: int) -> SignedTx:
    return _build(key, chain_id, KIND_TRANSFER, nonce, fee, TransferPayload(to, amount).to_list())


def make_stake(key: PrivateKey, chain_id: str, nonce: int, amount: int, fee: int) -> SignedTx:
    return _build(key, chain_id, KIND_STAKE, nonce, fee, StakePayload(amount).to_list())


def make_unstake(key: PrivateKey, chain_id: str, nonce: int, amount: int, fee: int) -> SignedTx:
    return _build(key, chain_id, KIND_UNSTAKE, nonce, fee, UnstakePayload(amount).to_list())


def make_evidence(
    key: PrivateKey, chain_id: str, nonce: int, evidence: DuplicateVoteEvidence, fee: int
) -> SignedTx:
    return _build(key, chain_id, KIND_EVIDENCE, nonce, fee, evidence.to_list())


def make_create_validator(
    account_key: PrivateKey, consensus_key: PrivateKey, chain_id: str, nonce: int, fee: int
) -> SignedTx:
    """`validator.create` signed by the operator's account key, with the consensus key's proof."""
    proof = consensus_key.sign(TAG_VALIDATOR_POP, proof_of_possession_message(chain_id, account_key.address))
    payload = CreateValidatorPayload(consensus_key.pubkey, proof)
    return _build(account_key, chain_id, KIND_VALIDATOR_CREATE, nonce, fee, payload.to_list())


def make_register_miner(key: PrivateKey, chain_id: str, nonce: int, fee: int) -> SignedTx:
    return _build(key, chain_id, KIND_MINER_REGISTER, nonce, fee, [])


def make_unregister_miner(key: PrivateKey, chain_id: str, nonce: int, fee: int) -> SignedTx:
    return _build(key, chain_id, KIND_MINER_UNREGISTER, nonce, fee, [])
