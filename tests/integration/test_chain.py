"""A real chain of `pocl-node run` processes on loopback (issue: BFT consensus and the node)."""

from __future__ import annotations

import pytest
from pocl.consensus.signing_state import SigningGuard
from pocl.ledger.keys import PrivateKey
from pocl.ledger.storage.keystore import load_key
from pocl.ledger.tx import make_create_validator, make_stake, make_transfer
from pocl.node.cluster import ClusterError, LocalCluster, RpcError, wait_until

pytestmark = pytest.mark.slow


def faucet(cluster: LocalCluster) -> PrivateKey:
    return load_key(cluster.testnet.faucet_key_path, None)


def test_four_validators_finalize_twenty_blocks_without_fork(make_cluster) -> None:
    cluster = make_cluster(4)
    cluster.start()
    cluster.wait_for_height(20, timeout=120)
    top = cluster.sync_blocks()
    assert top >= 20
    cluster.assert_no_fork(up_to=20)
    # every block carries the commit of its parent, signed by > 2/3 of the 4 equal validators
    commit = cluster.nodes[0].get("/blocks/10/commit")
    assert commit["height"] == 10 and len(commit["signatures"]) >= 3


def test_transfers_commit_exactly_once_and_replays_are_rejected(make_cluster) -> None:
    cluster = make_cluster(4)
    cluster.start()
    cluster.wait_for_height(2)
    key = faucet(cluster)
    recipient = PrivateKey.from_seed_text("recipient")
    txs = [
        make_transfer(key, cluster.testnet.chain_id, n, recipient.address, 1_000 + n, 10) for n in range(8)
    ]
    hashes = [cluster.nodes[n % 4].submit_tx(tx.raw) for n, tx in enumerate(txs)]
    assert hashes == [t.hash.hex() for t in txs]

    def all_committed() -> bool:
        return all(cluster.nodes[3].get(f"/txs/{h}")["status"] == "committed" for h in hashes)

    wait_until(all_committed, 60, "all transfers committed")
    expected = sum(1_000 + n for n in range(8))
    cluster.sync_blocks()
    for node in cluster.nodes:
        acct = node.get(f"/accounts/0x{recipient.address.hex()}")
        assert acct["balance"] == expected
    # committed once: exactly one block holds each tx
    heights = [cluster.nodes[0].get(f"/txs/{h}")["height"] for h in hashes]
    seen = []
    for h in sorted(set(heights)):
        block = cluster.nodes[0].get(f"/blocks/{h}")
        seen += [t["hash"] for t in block["txs"]]
    assert sorted(seen) == sorted(hashes)
    with pytest.raises(RpcError) as err:
        cluster.nodes[1].submit_tx(txs[0].raw)
    assert err.value.code == "nonce_too_low"


def test_one_of_four_down_keeps_going_two_down_halts_then_resumes(make_cluster) -> None:
    cluster = make_cluster(4)
    cluster.start()
    cluster.wait_for_height(3)
    cluster.nodes[3].kill()
    h = max(cluster.heights())
    cluster.wait_for_height(h + 5, timeout=90)
    cluster.nodes[2].kill()
    live = cluster.nodes[:2]
    stalled_at = cluster.sync_blocks(live)
    # with half the power gone nothing can be final: the height must not move for several timeouts
    with pytest.raises(ClusterError):
        cluster.wait_for_height(stalled_at + 2, live, timeout=8)
    cluster.nodes[2].start()
    cluster.wait_for_height(stalled_at + 3, cluster.nodes[:3], timeout=120)
    cluster.assert_no_fork(cluster.nodes[:3])


def test_restarted_validator_and_fresh_full_node_catch_up(make_cluster) -> None:
    cluster = make_cluster(4, non_validators=1)
    full = cluster.nodes[4]
    cluster.start(indices=[0, 1, 2, 3])
    cluster.wait_for_height(4, cluster.nodes[:4])
    cluster.nodes[1].kill()
    h = max(cluster.heights(cluster.nodes[:4]))
    cluster.wait_for_height(h + 6, [cluster.nodes[0], cluster.nodes[2], cluster.nodes[3]], timeout=90)
    cluster.nodes[1].start()
    full.start()
    target = max(cluster.heights(cluster.nodes[:4]))
    cluster.wait_for_height(target, [cluster.nodes[1], full], timeout=90)
    cluster.sync_blocks(cluster.nodes, timeout=60)
    cluster.assert_no_fork(cluster.nodes)
    # the full node re-executed every block: its own state root equals what the validators committed
    for node in (full, cluster.nodes[1]):
        st = node.status()
        header = cluster.nodes[0].get(f"/blocks/{st['height']}")["header"]
        assert st["state_root"] == header["state_root"]
    assert full.status()["validator"]["active"] is False


def test_partition_two_two_halts_without_fork_and_heals(make_cluster) -> None:
    cluster = make_cluster(4)
    cluster.start()
    cluster.wait_for_height(3)
    cluster.partition([0, 1], [2, 3])
    for side in ([0, 1], [2, 3]):
        nodes = [cluster.nodes[i] for i in side]
        wait_until(lambda ns=nodes: len({n.height() for n in ns}) == 1, 30, "partition side to settle")
    frozen = max(cluster.heights())
    with pytest.raises(ClusterError):
        cluster.wait_for_height(frozen + 2, [cluster.nodes[0]], timeout=8)
    with pytest.raises(ClusterError):
        cluster.wait_for_height(frozen + 2, [cluster.nodes[2]], timeout=1)
    cluster.heal()
    cluster.wait_for_height(frozen + 3, timeout=120)
    cluster.sync_blocks()
    cluster.assert_no_fork()


def test_double_signer_is_slashed_and_honest_restart_never_double_signs(make_cluster) -> None:
    cluster = make_cluster(4)
    cheater = cluster.nodes[3]
    cheater.extra_args.append("--unsafe-double-sign")
    cluster.start()
    cheater_addr = cheater.spec.address
    before = 1_000_000  # testnet stake

    def slashed() -> bool:
        acct = cluster.nodes[0].get(f"/accounts/{cheater_addr}")
        return acct["slashed_total"] > 0

    wait_until(slashed, 90, "the double signer to be slashed through evidence")
    acct = cluster.nodes[0].get(f"/accounts/{cheater_addr}")
    assert acct["stake"] + sum(u["amount"] for u in acct["unbonding"]) < before
    assert acct["jailed_until_height"] > cluster.nodes[0].height()
    vals = [v["operator"] for v in cluster.nodes[0].get("/validators")["validators"]]
    assert cheater_addr not in vals
    # an honest validator restarted mid-height keeps its signing state and never signs twice
    honest = cluster.nodes[1]
    honest_key = load_key(honest.home / "keys" / "priv_validator_key.json", None)
    state_file = honest.home / "data" / "priv_validator_state.json"

    def last_signed() -> tuple[int, int, int]:
        guard = SigningGuard(state_file, honest_key, cluster.testnet.chain_id)
        assert guard.last is not None
        return guard.last.hrs()

    honest.kill()
    before = last_signed()
    honest.start()
    h = cluster.nodes[0].height()
    cluster.wait_for_height(h + 3, [cluster.nodes[0], honest], timeout=90)
    cluster.assert_no_fork([cluster.nodes[0], cluster.nodes[1], cluster.nodes[2]])
    # it kept signing after the restart, strictly after what it had persisted before the crash
    assert last_signed() > before
    # and nobody ever produced evidence against it
    assert cluster.nodes[0].get(f"/accounts/{honest.spec.address}")["slashed_total"] == 0
    honest_id = honest_key.pubkey.hex()[:12]
    for node in cluster.nodes:
        assert f"double sign detected: validator {honest_id}" not in node.log_path.read_text()


def test_stake_then_create_validator_joins_the_validator_set(make_cluster) -> None:
    cluster = make_cluster(4)
    cluster.start()
    cluster.wait_for_height(2)
    key = faucet(cluster)
    tx = make_stake(key, cluster.testnet.chain_id, 0, 500_000, 10)
    cluster.nodes[0].submit_tx(tx.raw)
    addr = "0x" + key.address.hex()
    wait_until(lambda: cluster.nodes[2].get(f"/accounts/{addr}")["stake"] == 500_000, 60, "stake committed")
    # staking alone makes no validator (issue 14: becoming one is its own step, with its own key)
    operators = {v["operator"] for v in cluster.nodes[2].get("/validators")["validators"]}
    assert addr not in operators and len(operators) == 4
    consensus_key = PrivateKey.from_seed_text("stake-then-validate/consensus")
    cluster.nodes[0].submit_tx(make_create_validator(key, consensus_key, cluster.testnet.chain_id, 1, 10).raw)

    def joined() -> bool:
        return any(v["operator"] == addr for v in cluster.nodes[2].get("/validators")["validators"])

    wait_until(joined, 60, "validator.create committed")
    # a small offline validator (500k of 4.5M power) joins the set without stopping the chain
    vals = {v["operator"]: v for v in cluster.nodes[2].get("/validators")["validators"]}
    assert vals[addr]["power"] == 500_000 and len(vals) == 5
    assert vals[addr]["address"] == "0x" + consensus_key.address.hex()  # votes name the consensus key
    h = cluster.nodes[0].height()
    cluster.wait_for_height(h + 3, timeout=60)
    cluster.assert_no_fork()
