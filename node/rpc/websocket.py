"""`GET /events`: the WebSocket stream of node events (hello, then block, tx, round and phase messages).

A client may first replay stored blocks (`?from_height=N`) and then continues live without gaps or
duplicates. A client too slow to keep up is cut off with a `lagged` error (it can resume from a
height) instead of silently missing events or growing its buffer without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web
from pocl.node.events import NodeEvent
from pocl.node.interfaces import StreamNode
from pocl.node.rpc.errors import ApiError
from pocl.node.rpc.json_view import replayed_block_messages, stream_messages
from pocl.node.rpc.request import parse_uint, require_chain, require_not_pruned
from pocl.node.rpc.routes import Handler

WS_QUEUE_SIZE = 1024  # events buffered per subscriber; beyond that it is told "lagged" and closed
WS_MAX_MSG_BYTES = 4096
WS_HEARTBEAT_S = 30.0
SHUTDOWN = {"type": "shutdown"}
LAGGED = {"type": "lagged"}


class Subscriber:
    """One WebSocket client's buffer of stream messages."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.lagged = False

    def push(self, message: dict[str, Any]) -> None:
        if self.lagged:
            return
        if self.queue.qsize() >= WS_QUEUE_SIZE:
            self.lagged = True
            self.queue.put_nowait(dict(LAGGED))
            return
        self.queue.put_nowait(message)


class EventStream:
    """The `/events` handler and its subscribers; subscribed to the node between `start` and `stop`."""

    def __init__(self, node: StreamNode, max_clients: int) -> None:
        self.node = node
        self.max_clients = max_clients
        self.subscribers: set[Subscriber] = set()
        self._unsubscribe: Callable[[], None] | None = None

    def handlers(self) -> dict[str, Handler]:
        return {"events": self.events}

    def start(self) -> None:
        self._unsubscribe = self.node.subscribe(self.publish)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for sub in list(self.subscribers):
            sub.queue.put_nowait(dict(SHUTDOWN))

    def publish(self, event: NodeEvent) -> None:
        messages = stream_messages(event)
        for sub in list(self.subscribers):
            for message in messages:
                sub.push(message)

    async def events(self, request: web.Request) -> web.StreamResponse:
        if len(self.subscribers) >= self.max_clients:
            raise ApiError(503, "too_many_clients", "too many event subscribers")
        from_height = None
        if "from_height" in request.query:
            from_height = max(1, parse_uint(request.query["from_height"], "bad_height", "from_height"))
        chain = require_chain(self.node)
        if from_height is not None:
            require_not_pruned(chain, from_height)  # a replay that silently starts later would lose blocks
        ws = web.WebSocketResponse(heartbeat=WS_HEARTBEAT_S, max_msg_size=WS_MAX_MSG_BYTES)
        if not ws.can_prepare(request).ok:
            raise ApiError(400, "websocket_required", "GET /events needs a WebSocket upgrade")
        await ws.prepare(request)
        # Subscribe before replaying so nothing committed meanwhile is missed; duplicates are skipped.
        sub = Subscriber()
        self.subscribers.add(sub)
        read_task = asyncio.create_task(_read_until_closed(ws))
        try:
            await ws.send_json({"type": "hello", "height": chain.height, "chain_id": self.node.genesis.chain_id})
            last_sent = await self._replay(ws, from_height) if from_height is not None else 0
            await self._send_live(ws, sub, read_task, last_sent)
        except (ConnectionResetError, RuntimeError):
            pass
        finally:
            self.subscribers.discard(sub)
            read_task.cancel()
            await ws.close()
        return ws

    async def _replay(self, ws: web.WebSocketResponse, from_height: int) -> int:
        """Send the stored blocks from `from_height` to the head; returns the last height sent."""
        chain = require_chain(self.node)
        last_sent = 0
        h = from_height
        while h <= chain.height and not ws.closed:
            block = chain.store.block(h)
            if block is None:
                break
            for message in replayed_block_messages(block):
                await ws.send_json(message)
            last_sent = h
            h += 1
        return last_sent

    @staticmethod
    async def _send_live(
        ws: web.WebSocketResponse, sub: Subscriber, read_task: asyncio.Task[None], last_sent: int
    ) -> None:
        while not ws.closed:
            get = asyncio.create_task(sub.queue.get())
            done, _ = await asyncio.wait({get, read_task}, return_when=asyncio.FIRST_COMPLETED)
            if get not in done:
                get.cancel()
                return
            message = get.result()
            if message["type"] == SHUTDOWN["type"]:
                return
            if message["type"] == LAGGED["type"]:
                await ws.send_json(
                    {
                        "type": "error",
                        "code": "lagged",
                        "message": f"subscriber fell more than {WS_QUEUE_SIZE} events behind; "
                        "reconnect with ?from_height=N",
                    }
                )
                return
            if message.get("type") in ("block", "tx") and message.get("height", 0) <= last_sent:
                continue  # already sent by the replay
            await ws.send_json(message)


async def _read_until_closed(ws: web.WebSocketResponse) -> None:
    async for msg in ws:
        if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            break
