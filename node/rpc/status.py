"""`/status`, `/health`, `/peers`, `/net_info`, `/genesis`: what an operator asks of a running node."""

from __future__ import annotations

import time

from aiohttp import web
from pocl.ledger import roles
from pocl.ledger.keys import format_address
from pocl.node.interfaces import NodeStatusSource
from pocl.node.rpc.json_view import hexstr
from pocl.node.rpc.request import require_chain
from pocl.node.rpc.routes import Handler
from pocl.node.rpc.types import (
    GenesisView,
    HealthView,
    NetInfoView,
    OwnValidator,
    PeersView,
    PeerView,
    ReadyView,
    StatusView,
)
from pocl.p2p.addrbook import format_hostport
from pocl.p2p.host import PeerInfo


class StatusApi:
    def __init__(self, node: NodeStatusSource) -> None:
        self.node = node

    def handlers(self) -> dict[str, Handler]:
        return {
            "status": self.status,
            "health": self.health,
            "ready": self.ready,
            "peers": self.peers,
            "net_info": self.net_info,
            "genesis": self.genesis,
        }

    def _validator_json(self) -> OwnValidator | None:
        """This node as a validator: its consensus key, the operator it signs for, its power now."""
        key = self.node.consensus_key
        if key is None:
            return None
        state = require_chain(self.node).state
        power = next((v.power for v in state.validator_set() if v.pubkey == key.pubkey), 0)
        operator = roles.operator_of(state, key.address)
        account = self.node.account_key
        if operator is None and account is not None:
            operator = account.address  # not registered yet: the account `tx create-validator` would bind
        return {
            "address": format_address(key.address),
            "pubkey": hexstr(key.pubkey),
            "operator": format_address(operator) if operator is not None else "",
            "registered": roles.operator_of(state, key.address) is not None,
            "voting_power": power,
            "active": power > 0,
        }

    async def status(self, _request: web.Request) -> web.Response:
        node = self.node
        chain = require_chain(node)
        head = chain.store.head_block()
        view: StatusView = {
            "chain_id": node.genesis.chain_id,
            "genesis_hash": hexstr(node.genesis.hash),
            "node_id": hexstr(node.node_key.pubkey),
            "moniker": node.config.node.moniker,
            "height": chain.height,
            "earliest_block_height": chain.store.earliest_height,
            "latest_block_hash": hexstr(head.hash) if head else "",
            "latest_block_time_ms": head.header.time_ms if head else node.genesis.genesis_time_ms,
            "state_root": hexstr(chain.state.state_root()),
            "peers": len(node.host.peers()) if node.host else 0,
            "syncing": node.syncing,
            "consensus": node.driver.summary() if node.driver else None,
            "mempool": {"txs": len(node.mempool) if node.mempool else 0},
            "validator": self._validator_json(),
            "p2p": str(node.host.listen_addr) if node.host else "",
            "uptime_s": round(time.time() - node.started_at, 1),
            "readiness": self._ready_view(),
        }
        return web.json_response(view)

    def _ready_view(self) -> ReadyView:
        r = self.node.readiness()
        return {
            "ready": r.ready,
            "reasons": list(r.reasons),
            "detail": list(r.detail),
            "height": require_chain(self.node).height,
            "best_peer_height": r.best_peer_height,
            "lag_blocks": r.lag_blocks,
            "seconds_since_block": r.seconds_since_block,
            "disk_free_bytes": r.disk_free_bytes,
        }

    async def ready(self, _request: web.Request) -> web.Response:
        """Readiness (`/health` is liveness): 503 with the reasons when not ready."""
        view = self._ready_view()
        return web.json_response(view, status=200 if view["ready"] else 503)

    async def health(self, _request: web.Request) -> web.Response:
        view: HealthView = {"ok": True, "height": require_chain(self.node).height}
        return web.json_response(view)

    async def peers(self, _request: web.Request) -> web.Response:
        host = self.node.host
        view: PeersView = {"peers": [_peer_json(p) for p in (host.peers() if host else [])]}
        return web.json_response(view)

    async def net_info(self, _request: web.Request) -> web.Response:
        host = self.node.host
        peers = host.peers() if host else []
        addrs: list[str] = []
        p2p_address = ""
        if host is not None and host.running:
            advertised = host.listen_addr
            p2p_address = str(advertised)
            addrs.append(advertised.hostport)
            bound = format_hostport(host.config.listen_host, host.listen_port)
            if bound not in addrs:
                addrs.append(bound)
        view: NetInfoView = {
            "listening": bool(host is not None and host.running),
            "listen_addrs": addrs,
            "p2p_address": p2p_address,
            "node_id": hexstr(self.node.node_key.pubkey),
            "moniker": self.node.config.node.moniker,
            "n_peers": len(peers),
            "n_outbound": sum(1 for p in peers if p.outbound),
            "n_inbound": sum(1 for p in peers if not p.outbound),
            "peers": [_peer_json(p) for p in peers],
        }
        return web.json_response(view)

    async def genesis(self, _request: web.Request) -> web.Response:
        genesis = self.node.genesis
        view: GenesisView = {"genesis_hash": hexstr(genesis.hash), "genesis": genesis.to_json()}
        return web.json_response(view)


def _peer_json(p: PeerInfo) -> PeerView:
    return {
        "node_id": hexstr(p.node_id),
        "outbound": p.outbound,
        "persistent": p.persistent,
        "remote_ip": p.remote_ip,
        "best_height_at_connect": p.hello.best_height,
        "connected_s": round(time.time() - p.connected_at, 1),
        "listen_addr": p.hello.listen_addr,
        "agent": p.hello.agent,
    }
