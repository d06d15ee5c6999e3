"""`Node` satisfies every plug-in Protocol of `node.interfaces` (checked on a constructed node)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Protocol

import pytest
from pocl.node import interfaces

from tests.support.rpc_node import make_node

PROTOCOLS = [
    interfaces.RpcNode,
    interfaces.PoclReader,
    interfaces.MetricsNode,
    interfaces.MinerNode,
    interfaces.TxSubmitter,
    interfaces.PeerHost,
]


def members(protocol: type) -> set[str]:
    """Attributes and methods a Protocol declares, its bases' included."""
    out: set[str] = set()
    for cls in protocol.__mro__:
        if cls in (Protocol, object) or not getattr(cls, "_is_protocol", False):
            continue
        out |= set(inspect.get_annotations(cls))
        out |= {n for n, v in cls.__dict__.items() if callable(v) and not n.startswith("_")}
    return out


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.__name__)
def test_node_has_every_member_of(protocol: type, tmp_path: Path) -> None:
    node = make_node(tmp_path / "node")
    wanted = members(protocol)
    assert wanted, protocol
    assert not {m for m in wanted if not hasattr(node, m)}


def test_members_sees_inherited_protocol_members() -> None:
    assert {"chain", "mempool", "submit_tx", "subscribe", "genesis", "host"} <= members(interfaces.RpcNode)
