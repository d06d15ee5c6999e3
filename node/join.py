"""What `pocl-node init --join URL` asks of a running node: its genesis (checked against the hash the
operator was given out of band) and the peers to dial (the node itself and the peers it reports).

Nothing here writes files: `init` calls `fetch_join_source` before it creates anything, so a refused
genesis or an unreachable node leaves no half-made home.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from typing import Any

from pocl.genesis.schema import Genesis, GenesisError, parse_genesis
from pocl.node.errors import UsageError, UserError
from pocl.node.rpc.client import DEFAULT_TIMEOUT_S, RpcClient, RpcRequestError, RpcUnavailable
from pocl.p2p.addrbook import (
    AddressError,
    PeerAddr,
    format_peer_addr,
    is_loopback_host,
    is_unspecified_host,
    parse_hostport,
    parse_node_id,
    parse_peer_addr,
)

GENESIS_HASH_LEN = 32
JOIN_HINT = "is the URL right and the node's RPC reachable from here?"


@dataclasses.dataclass(frozen=True)
class JoinSource:
    """The answer of the node that `--join` named."""

    url: str
    genesis: Genesis
    node_id: str  # hex
    node_peer: str  # the answering node as `id@host:port`, as this machine should dial it
    peers: tuple[str, ...]  # node_peer first, then the dialable peers it reported


def parse_genesis_hash(text: str) -> bytes:
    """The 32-byte hash from `HEX` or `0xHEX` (what `pocl-node genesis hash` prints)."""
    digits = text.strip().removeprefix("0x").removeprefix("0X")
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        raise UsageError(f"--genesis-hash {text!r} is not hex") from None
    if len(raw) != GENESIS_HASH_LEN:
        raise UsageError(
            f"--genesis-hash must be {GENESIS_HASH_LEN} bytes ({2 * GENESIS_HASH_LEN} hex digits)"
        )
    return raw


def check_genesis_hash(genesis: Genesis, expected: bytes, source: str) -> None:
    """Refuse a genesis whose hash is not the one the operator was given."""
    if genesis.hash != expected:
        raise UserError(
            f"genesis hash mismatch: {source} serves chain {genesis.chain_id!r} with genesis hash "
            f"{genesis.hash.hex()}, but --genesis-hash is {expected.hex()}; nothing was written"
        )


def url_host(url: str) -> str:
    host = urllib.parse.urlsplit(url).hostname
    if not host:
        raise UsageError(f"--join {url!r}: no host in the URL")
    return host


def _dialable(host: str, from_host: str) -> bool:
    """A peer address this machine can dial: never 0.0.0.0, and loopback only when we ask a local node."""
    if not host or is_unspecified_host(host):
        return False
    return not is_loopback_host(host) or is_loopback_host(from_host)


def answering_peer(net_info: dict[str, Any], rpc_host: str) -> PeerAddr:
    """The answering node as a peer: its advertised address (external, or a routable listen address),
    else the host we reached its RPC at, with its p2p port."""
    try:
        addr = parse_peer_addr(str(net_info["p2p_address"]))
    except (KeyError, AddressError):
        raise UserError("its /net_info has no p2p address: is its P2P layer running?") from None
    if _dialable(addr.host, rpc_host):
        return addr
    return PeerAddr(addr.node_id, rpc_host, addr.port)


def reported_peers(net_info: dict[str, Any], rpc_host: str, exclude: bytes) -> list[str]:
    """The answering node's peers that this machine can dial (their advertised listen addresses)."""
    found: list[str] = []
    for peer in net_info.get("peers") or []:
        try:
            node_id = parse_node_id(str(peer["node_id"]))
            host, port = parse_hostport(str(peer["listen_addr"]))
        except (KeyError, TypeError, AddressError):
            continue  # a peer without a usable address: skip it, the others still help
        text = format_peer_addr(node_id, host, port)
        if node_id != exclude and _dialable(host, rpc_host) and text not in found:
            found.append(text)
    return found


def _get(client: RpcClient, path: str) -> Any:
    try:
        return client.get(path)
    except RpcRequestError as exc:
        raise UserError(
            f"{client.url}{path} answered {exc.message}: not a pocl node, or not its RPC address"
        ) from None
    except RpcUnavailable as exc:
        raise UserError(str(exc)) from None


def fetch_join_source(url: str, expected_hash: bytes, timeout: float = DEFAULT_TIMEOUT_S) -> JoinSource:
    """Fetch and check `URL/genesis`, then `URL/net_info`; a UserError (one line) on any failure."""
    with RpcClient(url, timeout, hint=JOIN_HINT) as client:
        answer = _get(client, "/genesis")
        if not isinstance(answer, dict) or not isinstance(answer.get("genesis"), dict):
            raise UserError(
                f"{client.url}/genesis did not answer with a genesis document: is it a pocl node?"
            )
        try:
            genesis = parse_genesis(answer["genesis"])
        except GenesisError as exc:
            raise UserError(f"the genesis served by {client.url} is invalid: {exc}") from None
        check_genesis_hash(genesis, expected_hash, client.url)
        net_info = _get(client, "/net_info")
        if not isinstance(net_info, dict):
            raise UserError(f"{client.url}/net_info did not answer with an object: is it a pocl node?")
        rpc_host = url_host(client.url)
        node = answering_peer(net_info, rpc_host)
        node_peer = str(node)
        peers = (node_peer, *reported_peers(net_info, rpc_host, exclude=node.node_id))
        return JoinSource(client.url, genesis, node.node_id.hex(), node_peer, peers)
