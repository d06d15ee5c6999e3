"""Explicit roles in state: validators (operator -> consensus key) and registered miners (DESIGN §4).

Staking alone makes an account neither a validator nor a miner. An operator (an account) becomes a
validator candidate by registering one consensus key (`validator.create`, with a proof that it holds
the key); that key signs its proposals and votes, so votes, headers and evidence name the *consensus*
address, and everything that maps such an address back to stake goes through `operator_of`. A miner
opts in with `miner.register` and out with `miner.unregister`; the PoCL eligible set reads `miners`.

State layout (raw namespace `NS_ROLE`, committed by the state root like every entry):

    v||operator (20 B)            -> consensus pubkey (32 B)     one key per operator, never changed
    c||consensus address (20 B)   -> operator (20 B)             one operator per key (reverse index)
    miners                        -> sorted list of registered miner addresses (canonical codec)

Public API: consensus_pubkey_of, operator_of, is_miner, miners, set_validator_key, register_miner,
unregister_miner, NS_ROLE.
"""

from __future__ import annotations

import bisect
from typing import Protocol

from pocl.ledger import codec
from pocl.ledger.keys import ADDRESS_LEN, PUBKEY_LEN, address_of


class State(Protocol):
    """The part of `ledger.state.State` roles use (state.py imports this module, not the reverse)."""

    def get_raw(self, ns: str, key: bytes) -> bytes | None: ...
    def set_raw(self, ns: str, key: bytes, value: bytes) -> None: ...
    def delete_raw(self, ns: str, key: bytes) -> None: ...


NS_ROLE = "role"
_VALIDATOR_PREFIX = b"v"
_CONSENSUS_PREFIX = b"c"
_MINERS_KEY = b"miners"


def consensus_pubkey_of(state: State, operator: bytes) -> bytes | None:
    """The consensus public key `operator` registered, or None (not a validator candidate)."""
    return state.get_raw(NS_ROLE, _VALIDATOR_PREFIX + operator)


def operator_of(state: State, consensus_address: bytes) -> bytes | None:
    """The operator account behind a consensus address (votes, headers, evidence), or None."""
    return state.get_raw(NS_ROLE, _CONSENSUS_PREFIX + consensus_address)


def set_validator_key(state: State, operator: bytes, consensus_pubkey: bytes) -> None:
    """Record `operator`'s consensus key and its reverse index. The caller checked the rules
    (`validator.create`'s validation or genesis): one key per operator, one operator per key."""
    if len(operator) != ADDRESS_LEN or len(consensus_pubkey) != PUBKEY_LEN:
        raise ValueError("operator must be 20 bytes and the consensus key 32 bytes")
    consensus_address = address_of(consensus_pubkey)
    if consensus_pubkey_of(state, operator) is not None:
        raise ValueError(f"operator 0x{operator.hex()} already has a consensus key")
    if operator_of(state, consensus_address) is not None:
        raise ValueError(f"consensus key 0x{consensus_address.hex()} is already registered")
    state.set_raw(NS_ROLE, _VALIDATOR_PREFIX + operator, consensus_pubkey)
    state.set_raw(NS_ROLE, _CONSENSUS_PREFIX + consensus_address, operator)


def miners(state: State) -> list[bytes]:
    """Registered miner addresses, sorted."""
    raw = state.get_raw(NS_ROLE, _MINERS_KEY)
    return list(codec.decode(raw)) if raw is not None else []


def is_miner(state: State, address: bytes) -> bool:
    registered = miners(state)
    i = bisect.bisect_left(registered, address)
    return i < len(registered) and registered[i] == address


def register_miner(state: State, address: bytes) -> None:
    """Add `address` to the registered miners (ValueError if it already is one)."""
    registered = miners(state)
    i = bisect.bisect_left(registered, address)
    if i < len(registered) and registered[i] == address:
        raise ValueError(f"0x{address.hex()} is already a registered miner")
    registered.insert(i, address)
    state.set_raw(NS_ROLE, _MINERS_KEY, codec.encode(registered))


def unregister_miner(state: State, address: bytes) -> None:
    """Remove `address` from the registered miners (ValueError if it is not one)."""
    registered = miners(state)
    i = bisect.bisect_left(registered, address)
    if i == len(registered) or registered[i] != address:
        raise ValueError(f"0x{address.hex()} is not a registered miner")
    del registered[i]
    if registered:
        state.set_raw(NS_ROLE, _MINERS_KEY, codec.encode(registered))
    else:
        state.delete_raw(NS_ROLE, _MINERS_KEY)
