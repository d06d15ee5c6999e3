"""One table of P2P message ids (`pocl.p2p.message_ids`): ids and names are unique, each sits in its
layer's range, and a running node registers exactly the table, no more, no less."""

from __future__ import annotations

from pathlib import Path

from pocl.p2p import message_ids
from pocl.p2p.message_ids import MESSAGE_IDS

from tests.support.rpc_node import make_node

RANGE_OF = {
    message_ids.TRANSPORT: message_ids.TRANSPORT_TYPE_IDS,
    message_ids.PEER_EXCHANGE: message_ids.NETWORK_TYPE_IDS,
    message_ids.BLOCK_SYNC: message_ids.NETWORK_TYPE_IDS,
    message_ids.CONSENSUS: message_ids.NODE_TYPE_IDS,
    message_ids.TX_GOSSIP: message_ids.NODE_TYPE_IDS,
    message_ids.STATE_SYNC: message_ids.NODE_TYPE_IDS,
}


def test_ids_and_names_are_unique_and_in_their_layers_range() -> None:
    assert len({m.type_id for m in MESSAGE_IDS}) == len(MESSAGE_IDS)
    assert len({m.name for m in MESSAGE_IDS}) == len(MESSAGE_IDS)
    for m in MESSAGE_IDS:
        assert m.type_id in RANGE_OF[m.protocol], m


def test_every_module_level_id_is_in_the_table() -> None:
    entries = {v for v in vars(message_ids).values() if isinstance(v, message_ids.MessageId)}
    assert entries == set(MESSAGE_IDS)


def test_wire_ids_are_unchanged() -> None:
    """Type ids are wire format: peers running older code must keep understanding us."""
    assert {m.name: m.type_id for m in MESSAGE_IDS} == {
        "hello": 1, "ping": 2, "pong": 3, "disconnect": 4, "error": 5,
        "get_addrs": 16, "addrs": 17,
        "get_status": 20, "status": 21, "get_blocks": 22, "blocks": 23,
        "proposal": 64, "vote": 65, "get_proposal_block": 66, "proposal_block": 67,
        "tx": 68, "tx_batch": 70,
        "compact_proposal": 71, "get_block_txs": 72, "block_txs": 73,
        "tx_announce": 74, "get_tx": 75, "tx_body": 76,
        "get_snapshots": 80, "snapshots": 81, "get_snapshot_manifest": 82, "snapshot_manifest": 83,
        "get_snapshot_chunk": 84, "snapshot_chunk": 85, "get_headers": 86, "headers": 87,
        "get_model": 88, "model": 89,
    }  # fmt: skip


async def test_a_node_registers_exactly_the_table(tmp_path: Path) -> None:
    node = make_node(tmp_path / "n")
    node.config = node.config.replace("p2p", pex=True)
    await node.start()
    try:
        assert node.host is not None
        registered = {(spec.type_id, spec.name) for spec in node.host.registry.specs()}
    finally:
        await node.stop()
    assert registered == {(m.type_id, m.name) for m in MESSAGE_IDS}
