"""Seven validators with unequal stake under a steady tx load, one of them joining late: six genesis
validators bond different extra stakes (so voting power is uneven), a seventh node starts when the
chain is already under way, catches up by block sync, stakes and creates its validator with its own
consensus key, and then signs: its key appears in later commits. Every transfer commits exactly once,
and all seven hold the same blocks and state roots."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pocl.ledger.keys import PrivateKey
from pocl.ledger.storage.keystore import load_key
from pocl.ledger.tx import make_create_validator, make_stake, make_transfer
from pocl.node.cluster import LocalCluster, NodeProcess, wait_until

from tests.perturb.kit import (
    PERTURB_CONFIG,
    RECOVER_TIMEOUT_S,
    TX_FEE,
    TxLoad,
    assert_same_chain,
    wait_blocks,
    wait_recovered,
    wait_signing,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

GENESIS_VALIDATORS = 6
EXTRA_STAKE = 250_000  # validator i bonds i * this on top of the testnet's 1,000,000
JOINER_FUNDS = 2_000_000
JOINER_STAKE = 600_000
LOAD_BATCH = 10
SYNC_FROM_HEIGHT = 15  # the joiner starts once the chain is this far: block sync has work to do


def account_key(node: NodeProcess) -> PrivateKey:
    return load_key(node.home / "keys" / "account_key.json", None)


def test_seven_unequal_validators_under_load_one_joining_by_sync_then_signing(
    own_cluster_only: None, make_cluster: Callable[..., LocalCluster]
) -> None:
    cluster = make_cluster(GENESIS_VALIDATORS, non_validators=1, config=PERTURB_CONFIG)
    validators, joiner = cluster.nodes[:GENESIS_VALIDATORS], cluster.nodes[GENESIS_VALIDATORS]
    cluster.start(range(GENESIS_VALIDATORS))
    chain_id = cluster.testnet.chain_id
    load = TxLoad(cluster, "seven")
    load.submit(LOAD_BATCH, via=validators)
    for node in validators[1:]:  # uneven power: validator i bonds i * EXTRA_STAKE more
        node.submit_tx(make_stake(account_key(node), chain_id, 0, node.index * EXTRA_STAKE, TX_FEE).raw)
    funder = account_key(validators[0])
    validators[0].submit_tx(
        make_transfer(funder, chain_id, 0, account_key(joiner).address, JOINER_FUNDS, TX_FEE).raw
    )

    def powers() -> list[int]:
        return sorted(v["power"] for v in validators[0].get("/validators")["validators"])

    wait_until(lambda: len(set(powers())) == GENESIS_VALIDATORS, 60, "six different voting powers")
    cluster.wait_for_height(SYNC_FROM_HEIGHT, nodes=validators, timeout=60)
    load.submit(LOAD_BATCH, via=validators)

    joiner.start()  # a full node first: it catches up by block sync
    cluster.sync_blocks(timeout=RECOVER_TIMEOUT_S)
    # the syncer logs once its run ends, which under load can be after the joiner reached the head
    wait_until(
        lambda: "block sync applied" in joiner.log_path.read_text(),
        RECOVER_TIMEOUT_S,
        "the joiner to report its block sync",
    )
    key = account_key(joiner)
    consensus = load_key(joiner.home / "keys" / "priv_validator_key.json", None)
    joiner.submit_tx(make_stake(key, chain_id, 0, JOINER_STAKE, TX_FEE).raw)
    joiner.submit_tx(make_create_validator(key, consensus, chain_id, 1, TX_FEE).raw)
    load.submit(LOAD_BATCH)

    def joined() -> bool:
        vals = validators[0].get("/validators")["validators"]
        return any(v["address"].lower() == joiner.spec.consensus_address.lower() for v in vals)

    wait_until(joined, 60, "the joiner in the validator set")
    assert len(validators[0].get("/validators")["validators"]) == GENESIS_VALIDATORS + 1
    wait_signing(cluster, joiner, validators[0], RECOVER_TIMEOUT_S)  # its consensus key in later commits
    load.submit(LOAD_BATCH)
    wait_blocks(cluster, 3, cluster.nodes, timeout=60)
    load.wait_committed(cluster.nodes)
    wait_recovered(cluster)
    assert_same_chain(cluster)
