"""Prometheus metrics of one node (DESIGN §7), served at `http://[metrics] listen_addr/metrics`.

Each node owns its own `CollectorRegistry` (never the process-global one), so tests can run several
nodes in one process. Live values (height, peers, mempool, sync) are read at scrape time through
callbacks; history (block interval, rounds per height, missed blocks, PoCL outcomes) is fed by the
node's events through `observe_event`, which other components may also call, and they may register
their own collectors on `NodeMetrics.registry`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pocl.ledger.keys import address_of, format_address
from pocl.node.config import parse_host_port
from pocl.node.http_server import serve_app
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from pocl.node.node import Node, NodeEvent

log = logging.getLogger("pocl.metrics")

NAMESPACE = "pocl"
BLOCK_INTERVAL_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
ROUNDS_BUCKETS = (1, 2, 3, 4, 6, 8, 16)
PHASE_NAMES = ("commit", "predict", "vote", "done")  # consensus.pocl.records phase names; 1/0 gauge

EventHandler = Callable[["NodeEvent"], None]


class NodeMetrics:
    def __init__(self, node: Node, registry: CollectorRegistry | None = None) -> None:
        self.node = node
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry

        def gauge(name: str, doc: str, fn: Callable[[], float]) -> Gauge:
            g = Gauge(name, doc, namespace=NAMESPACE, registry=r)
            g.set_function(fn)
            return g

        gauge("height", "Height of the latest committed block", self._height)
        gauge("peers", "Connected P2P peers", self._peers)
        gauge("mempool_txs", "Transactions waiting in the mempool", self._mempool_txs)
        gauge("mempool_bytes", "Bytes of the transactions in the mempool", self._mempool_bytes)
        gauge("syncing", "1 while the node catches up by block sync before joining consensus", self._syncing)
        gauge("consensus_round", "BFT round of the height being decided", self._consensus_round)
        self.blocks = Counter("blocks", "Blocks committed by this node", namespace=NAMESPACE, registry=r)
        self.txs = Counter("txs_committed", "Transactions committed", namespace=NAMESPACE, registry=r)
        self.block_interval = Histogram(
            "block_interval_seconds",
            "Time between consecutive block headers",
            namespace=NAMESPACE,
            registry=r,
            buckets=BLOCK_INTERVAL_BUCKETS,
        )
        self.rounds = Histogram(
            "rounds_per_height",
            "BFT rounds needed to decide a height (1 = decided in round 0)",
            namespace=NAMESPACE,
            registry=r,
            buckets=ROUNDS_BUCKETS,
        )
        self.missed = Counter(
            "missed_blocks",
            "Blocks whose commit lacks this validator's signature",
            ["validator"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.pocl_round = Gauge("round", "Current PoCL round", namespace=NAMESPACE, registry=r)
        self.pocl_phase = Gauge(
            "round_phase",
            "1 for the PoCL round's current phase",
            ["phase"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.pocl_participants = Gauge(
            "round_participants",
            "Miners eligible in the current PoCL round",
            namespace=NAMESPACE,
            registry=r,
        )
        self.pocl_winners = Gauge(
            "round_winners", "Winners of the last finalized PoCL round", namespace=NAMESPACE, registry=r
        )
        self.pocl_rounds = Counter(
            "rounds_finalized", "PoCL rounds finalized", ["void"], namespace=NAMESPACE, registry=r
        )
        self.pocl_slashes = Counter(
            "slashes", "PoCL penalties applied", ["kind"], namespace=NAMESPACE, registry=r
        )
        self.pocl_rewards = Counter(
            "rewards", "PoCL reward amount paid", ["role"], namespace=NAMESPACE, registry=r
        )
        self.pocl_round_blocks = Gauge(
            "round_duration_blocks",
            "Blocks the last finalized PoCL round took from opening to finalization",
            namespace=NAMESPACE,
            registry=r,
        )
        for phase in PHASE_NAMES:
            self.pocl_phase.labels(phase).set(0)
        self._handlers: list[EventHandler] = []
        self._last_time_ms: int | None = None
        self._signers: dict[bytes, bytes] | None = None  # pubkey -> address of the last block's signers
        self._round_opened_at: dict[int, int] = {}
        self._runner: web.AppRunner | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.port = 0

    # ------------------------------------------------------------------ scrape-time values

    def _height(self) -> float:
        return self.node.chain.height if self.node.chain else 0

    def _peers(self) -> float:
        return len(self.node.host.peers()) if self.node.host else 0

    def _mempool_txs(self) -> float:
        return len(self.node.mempool) if self.node.mempool else 0

    def _mempool_bytes(self) -> float:
        return self.node.mempool.size_bytes if self.node.mempool else 0

    def _syncing(self) -> float:
        return 1.0 if self.node.syncing else 0.0

    def _consensus_round(self) -> float:
        return self.node.driver.round if self.node.driver else 0

    # ------------------------------------------------------------------ events

    def add_handler(self, handler: EventHandler) -> None:
        """Call `handler(event)` for every node event (for collectors registered by other components)."""
        self._handlers.append(handler)

    def expose_text(self) -> bytes:
        return generate_latest(self.registry)

    def prime(self) -> None:
        """Take the chain's current head as the baseline (interval and missed-block accounting)."""
        chain = self.node.chain
        if chain is None:
            return
        self._last_time_ms = chain.head_time_ms if chain.height > 0 else None
        self._signers = self._signing_set()

    def _signing_set(self) -> dict[bytes, bytes] | None:
        from pocl.node.chain import signing_validators

        chain = self.node.chain
        if chain is None:
            return None
        vals = signing_validators(chain.state)
        if vals is None:
            return None
        out = {v.pubkey: address_of(v.pubkey) for v in vals}
        for addr in out.values():
            self.missed.labels(format_address(addr))  # export zeros for every validator
        return out

    def observe_event(self, event: NodeEvent) -> None:
        """Fold one node event into the metrics; never raises (a metrics bug must not stop the node)."""
        try:
            if event.kind == "block":
                self._on_block(event.data)
                for item in event.data.get("events", []):
                    self._on_executor_event(item.get("kind", ""), item.get("data", {}))
            elif event.kind.startswith("pocl_"):
                self._on_executor_event(event.kind, event.data)
        except Exception:
            log.exception("metrics: cannot fold event %s", event.kind)
        for handler in list(self._handlers):
            try:
                handler(event)
            except Exception:
                log.exception("metrics handler failed")

    def _on_block(self, data: dict[str, Any]) -> None:
        self.blocks.inc()
        self.txs.inc(int(data.get("txs", 0)))
        time_ms = int(data.get("time_ms", 0))
        if self._last_time_ms is not None and time_ms >= self._last_time_ms:
            self.block_interval.observe((time_ms - self._last_time_ms) / 1000)
        self._last_time_ms = time_ms
        if not data.get("synced"):
            self.rounds.observe(int(data.get("round", 0)) + 1)
        self._count_missed(int(data["height"]))

    def _count_missed(self, height: int) -> None:
        """The block's last_commit certifies height-1: every validator of that height's set that is
        absent from it missed that block."""
        chain = self.node.chain
        expected = self._signers
        self._signers = self._signing_set()  # the set that signs `height` (certified by the next block)
        if chain is None or expected is None or height < 2:
            return
        block = chain.store.block(height)
        if block is None or block.last_commit is None:
            return
        signed = {s.validator for s in block.last_commit.signatures}
        for pubkey, addr in expected.items():
            if pubkey not in signed:
                self.missed.labels(format_address(addr)).inc()

    def _on_executor_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "pocl_round_opened":
            rnd = int(data.get("round", 0))
            self.pocl_round.set(rnd)
            self.pocl_participants.set(len(data.get("eligible", [])))
            self._set_phase(PHASE_NAMES[0])
            self._round_opened_at = {rnd: int(data.get("height", 0))}
        elif kind == "pocl_phase":
            self.pocl_round.set(int(data.get("round", 0)))
            self._set_phase(str(data.get("phase", "")))
        elif kind == "pocl_round_finalized":
            rnd = int(data.get("round", 0))
            self.pocl_winners.set(len(data.get("winners", [])))
            self.pocl_rounds.labels("true" if data.get("void") else "false").inc()
            self._set_phase("done")
            opened = self._round_opened_at.pop(rnd, None)
            if opened is not None and self.node.chain is not None:
                self.pocl_round_blocks.set(max(0, self.node.chain.height - opened + 1))
        elif kind == "pocl_slashed":
            self.pocl_slashes.labels(str(data.get("kind", "unknown"))).inc()
        elif kind == "pocl_reward":
            self.pocl_rewards.labels(str(data.get("role", "unknown"))).inc(int(data.get("amount", 0)))

    def _set_phase(self, phase: str) -> None:
        if phase not in PHASE_NAMES:
            self.pocl_phase.labels(phase)
        for name in {*PHASE_NAMES, phase}:
            self.pocl_phase.labels(name).set(1 if name == phase else 0)

    # ------------------------------------------------------------------ HTTP

    async def _serve(self, _request: web.Request) -> web.Response:
        body = self.expose_text()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self, listen_addr: str) -> None:
        """Subscribe to the node's events and serve `/metrics` on `listen_addr` (port 0 = any free port)."""
        app = web.Application()
        app.router.add_get("/metrics", self._serve)
        self._runner, self.port = await serve_app(app, listen_addr, what="metrics")
        self.prime()
        self._unsubscribe = self.node.subscribe(self.observe_event)
        log.info("metrics listening on http://%s:%d/metrics", parse_host_port(listen_addr)[0], self.port)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
