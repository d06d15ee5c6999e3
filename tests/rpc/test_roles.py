"""Explicit roles from the operator's side, on real in-process nodes: `tx register-miner` /
`unregister-miner` and `query miner` (over `GET /miners/{address}`), and `tx create-validator` + `tx stake`
turning a running non-genesis node into a validator that signs with its consensus key."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from pocl.consensus.bft.commit import CommitError, verify_commit
from pocl.consensus.bft.votes import ValidatorSet
from pocl.ledger.keys import PrivateKey, format_address
from pocl.ledger.storage.keystore import save_key
from pocl.ledger.tx import make_stake, make_transfer
from pocl.node.cli import main
from pocl.node.node import Node

from tests.support.rpc_node import FAUCET, Api, home_keys, make_node, wait_for

MINER_STAKE = 20_000  # above the default min_miner_stake (10_000)
FEE = 10


async def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """`pocl-node ARGS` in a worker thread (its blocking RPC calls must not stall the node's loop)."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, [str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


async def cli_json(capsys: pytest.CaptureFixture[str], *args: object) -> Any:
    code, out, err = await cli(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


async def committed_nonce(node: Node, key: PrivateKey, nonce: int) -> None:
    await wait_for(
        lambda: (a := node.chain.state.account(key.address)) is not None and a.nonce >= nonce,  # type: ignore[union-attr]
        30,
        f"nonce {nonce} of {format_address(key.address)} committed",
    )


def rpc_url(node: Node) -> str:
    assert node.rpc is not None
    return f"http://127.0.0.1:{node.rpc.port}"


async def test_register_miner_makes_query_miner_report_registered_and_eligible(
    node: Node, api: Api, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = rpc_url(node)
    account, _consensus = home_keys(node.home)
    # the genesis validator-miner
    status, own = await api.get(f"/miners/{format_address(account.address)}")
    assert status == 200, own
    assert own["registered"] is True and own["eligible_next"] is True and own["stake"] == 1_000_000
    assert own["not_eligible_reasons"] == [] and own["last_penalty"] is None

    # an unknown address: 404 over RPC, one clear line from the CLI
    nobody = format_address(PrivateKey.from_seed_text("nobody").address)
    status, body = await api.get(f"/miners/{nobody}")
    assert status == 404 and body["error"]["code"] == "miner_not_found"
    code, out, err = await cli(capsys, "query", "miner", nobody, "--node", url)
    assert code == 1 and out == ""
    assert err.splitlines() == [
        f"error: {nobody} is not known to the chain: no account, never registered as a miner "
        "(fund it, stake, then: pocl-node tx register-miner)"
    ]

    # staking alone makes the faucet account neither a miner nor a validator
    node.submit_tx(make_stake(FAUCET, "rpc-test", 0, MINER_STAKE, FEE).raw)
    await committed_nonce(node, FAUCET, 1)
    faucet = format_address(FAUCET.address)
    before = await cli_json(capsys, "query", "miner", faucet, "--node", url)
    assert before["stake"] == MINER_STAKE and before["registered"] is False
    assert before["eligible_next"] is False and before["eligible_now"] is False
    assert any("not registered" in r for r in before["not_eligible_reasons"])
    vals = await cli_json(capsys, "query", "validators", "--node", url)
    assert faucet not in [v["operator"] for v in vals["validators"]]

    key_file = tmp_path / "faucet_key.json"
    save_key(key_file, FAUCET, None, insecure_unencrypted=True)
    sent = await cli_json(capsys, "tx", "register-miner", "--key", key_file, "--node", url, "--wait")
    assert sent["kind"] == "miner.register" and sent["status"] == "committed" and sent["sender"] == faucet
    after = await cli_json(capsys, "query", "miner", faucet, "--node", url)
    assert after["registered"] is True and after["eligible_next"] is True
    assert after["not_eligible_reasons"] == []
    code, human, err = await cli(capsys, "query", "miner", faucet, "--node", url)
    assert code == 0, err
    lines = dict(
        line.split(None, 1) for line in human.splitlines() if line.startswith(("registered", "stake"))
    )
    assert lines["registered"].strip() == "yes" and lines["stake"].startswith(str(MINER_STAKE))
    assert f"next round {after['next_round']}" in human and "eligible" in human

    # and out again: eligible no more from the next round
    sent = await cli_json(capsys, "tx", "unregister-miner", "--key", key_file, "--node", url, "--wait")
    assert sent["kind"] == "miner.unregister" and sent["status"] == "committed"
    gone = await cli_json(capsys, "query", "miner", faucet, "--node", url)
    assert gone["registered"] is False and gone["eligible_next"] is False


async def test_create_validator_and_stake_turn_a_running_node_into_a_validator(
    node: Node, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A second node joins as a full node with its own consensus key loaded; its account (not in genesis)
    is funded, binds the key with `tx create-validator`, stakes as much as the genesis validator and from
    then on the chain only moves with its votes, signed with the consensus key, never the account key."""
    assert node.host is not None
    url = rpc_url(node)
    joiner = make_node(tmp_path / "joiner", genesis=node.genesis, peers=(str(node.host.listen_addr),))
    account, consensus = home_keys(joiner.home)
    assert account.pubkey != consensus.pubkey
    await joiner.start()
    try:
        node.submit_tx(make_transfer(FAUCET, "rpc-test", 0, account.address, 2_000_000, FEE).raw)
        await committed_nonce(node, FAUCET, 1)
        home = joiner.home
        created = await cli_json(capsys, "tx", "create-validator", "--home", home, "--node", url, "--wait")
        assert created["kind"] == "validator.create" and created["status"] == "committed"
        assert created["consensus_address"] == format_address(consensus.address)
        # bound but unstaked: still no validator
        assert consensus.pubkey not in [v.pubkey for v in node.chain.state.validator_set()]  # type: ignore[union-attr]
        staked = await cli_json(capsys, "tx", "stake", "1_000_000", "--home", home, "--node", url, "--wait")
        assert staked["status"] == "committed"
        vals = await cli_json(capsys, "query", "validators", "--node", url)
        mine = [v for v in vals["validators"] if v["operator"] == format_address(account.address)]
        assert mine and mine[0]["address"] == format_address(consensus.address)
        assert mine[0]["pubkey"] == consensus.pubkey.hex() and mine[0]["power"] == 1_000_000

        # equal power: every further block needs the joiner's precommit (2/3 of 2 is both)
        since = node.chain.height  # type: ignore[union-attr]
        await wait_for(lambda: node.chain.height >= since + 4, 60, "blocks signed by both")  # type: ignore[union-attr]
        commit = node.chain.store.commit(since + 3)  # type: ignore[union-attr]
        assert commit is not None
        signers = {s.validator for s in commit.signatures}
        assert consensus.pubkey in signers and account.pubkey not in signers
        genesis_consensus = home_keys(node.home)[1]
        by_consensus = ValidatorSet([(genesis_consensus.pubkey, 1_000_000), (consensus.pubkey, 1_000_000)])
        verify_commit("rpc-test", commit, by_consensus, commit.block_hash, since + 3)
        by_account = ValidatorSet([(genesis_consensus.pubkey, 1_000_000), (account.pubkey, 1_000_000)])
        with pytest.raises(CommitError):
            verify_commit("rpc-test", commit, by_account, commit.block_hash, since + 3)
        st = await cli_json(capsys, "query", "status", "--node", rpc_url(joiner))
        assert st["validator"]["operator"] == format_address(account.address)
        assert st["validator"]["address"] == format_address(consensus.address)
        assert st["validator"]["registered"] is True and st["validator"]["active"] is True
    finally:
        await joiner.stop()
