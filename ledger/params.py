"""Chain parameters fixed at genesis, and genesis accounts.

Plain data shared by the genesis loader, the executor and consensus. Amounts are integers in base
units; fractions are integer basis points (1/10,000) so no float ever reaches state.
"""

from __future__ import annotations

import dataclasses
from typing import Any

BPS = 10_000  # basis points in 1.0


@dataclasses.dataclass(frozen=True)
class ChainParams:
    # ledger
    min_fee: int = 1
    max_tx_bytes: int = 64 * 1024
    max_pocl_tx_bytes: int = 4 * 1024 * 1024
    max_block_txs: int = 5_000
    max_block_bytes: int = 16 * 1024 * 1024
    unbonding_blocks: int = 20
    # validators
    min_validator_stake: int = 1_000
    max_validators: int = 100
    # evidence (double signing)
    double_sign_slash_bps: int = 500
    double_sign_jail_blocks: int = 1_000
    evidence_max_age_blocks: int = 10_000
    # BFT timeouts (milliseconds): base + delta * round
    timeout_propose_ms: int = 1_000
    timeout_propose_delta_ms: int = 500
    timeout_prevote_ms: int = 500
    timeout_prevote_delta_ms: int = 250
    timeout_precommit_ms: int = 500
    timeout_precommit_delta_ms: int = 250
    timeout_commit_ms: int = 1_000
    # Proposer-based timestamps (`consensus.bft.timely`, CometBFT's SynchronyParams): a validator prevotes
    # nil for a new proposal whose time is outside [receipt - precision - message delay, receipt + precision]
    # on its own clock. Not block validity: only prevotes depend on them.
    pbts_precision_ms: int = 500  # the most two honest validators' clocks differ (NTP: a few ms to tens)
    pbts_message_delay_ms: int = 3_000  # building, signing and gossiping a proposal to every validator

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChainParams:
        """Build from a JSON object; unknown keys and non-integer values raise ValueError naming the key."""
        known = {f.name for f in dataclasses.fields(cls)}
        for key, value in data.items():
            if key not in known:
                raise ValueError(f"unknown parameter {key!r}")
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"parameter {key!r} must be an integer")
            if value < 0:
                raise ValueError(f"parameter {key!r} must not be negative")
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class GenesisAccount:
    address: bytes  # 20 bytes
    balance: int
    stake: int = 0  # bonded at genesis; a staked account needs its pubkey
    pubkey: bytes | None = None  # 32 bytes, required when stake > 0
    # The operator's consensus key (`ledger.roles`): with stake >= min_validator_stake a genesis validator.
    consensus_pubkey: bytes | None = None
    miner: bool = False  # a registered miner from genesis (the PoCL eligible set reads registrations)
