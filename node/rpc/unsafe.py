"""`/unsafe/p2p/*`: drop and refuse peers on command, to partition TEST networks (`[rpc] unsafe = true`)."""

from __future__ import annotations

import json
import logging

from aiohttp import web
from pocl.node.interfaces import PeerHost
from pocl.node.rpc.errors import ApiError
from pocl.node.rpc.routes import Handler
from pocl.p2p.host import Host

log = logging.getLogger("pocl.rpc")
BAN_FOREVER_S = 10**9


class PeerAdminApi:
    def __init__(self, node: PeerHost) -> None:
        self.node = node

    def handlers(self) -> dict[str, Handler]:
        return {"unsafe_block_peers": self.block_peers, "unsafe_unblock_peers": self.unblock_peers}

    async def _host_and_ids(self, request: web.Request) -> tuple[Host, list[bytes]]:
        try:
            body = await request.json()
            ids = [bytes.fromhex(t) for t in body["node_ids"]]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise ApiError(400, "bad_request", 'body must be {"node_ids": ["<hex>", ...]}') from None
        if self.node.host is None:
            raise ApiError(503, "not_ready", "node is starting")
        return self.node.host, ids

    async def block_peers(self, request: web.Request) -> web.Response:
        host, ids = await self._host_and_ids(request)
        for nid in ids:
            host.bans.ban(nid, "unsafe rpc: test partition", duration=BAN_FOREVER_S)
            peer = host.peer(nid)
            if peer is not None:
                peer.conn.close("test partition")
        log.warning("UNSAFE rpc: blocked %d peers", len(ids))
        return web.json_response({"blocked": [n.hex() for n in ids]})

    async def unblock_peers(self, request: web.Request) -> web.Response:
        host, ids = await self._host_and_ids(request)
        for nid in ids:
            host.bans.unban(nid)
        return web.json_response({"unblocked": [n.hex() for n in ids]})
