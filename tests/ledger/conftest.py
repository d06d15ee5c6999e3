"""Fixtures for ledger tests: chain parameters with short periods and the funded genesis state."""

from __future__ import annotations

import pytest
from pocl.ledger.params import ChainParams
from pocl.ledger.state import State

from tests.support.ledger_kit import CHAIN_ID, genesis_accounts


@pytest.fixture
def params() -> ChainParams:
    return ChainParams(unbonding_blocks=3, double_sign_jail_blocks=10, evidence_max_age_blocks=50)


@pytest.fixture
def genesis(params: ChainParams) -> State:
    return State.from_genesis(params, genesis_accounts(), CHAIN_ID)
