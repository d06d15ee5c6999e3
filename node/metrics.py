"""Prometheus metrics of one node (DESIGN §7), served at `http://[metrics] listen_addr/metrics`.

Names follow CometBFT's `namespace_subsystem_name`: `pocl_consensus_*` (BFT: height, the BFT round of
the height being decided, block interval, missed blocks), `pocl_p2p_*`, `pocl_mempool_*`,
`pocl_blocksync_*`, `pocl_learning_*` (the PoCL round: phase, participants, winners, rewards, slashes,
so a PoCL round is never mistaken for a BFT round), `pocl_rpc_*` (`node/rpc/limits.py`), and the
standard `process_*` / `python_*` collectors. `docs/grafana/pocl-dashboard.json` charts them.

Each node owns its own `CollectorRegistry` (never the process-global one), so tests can run several
nodes in one process. Live values (height, peers, mempool, sync) are read at scrape time through
callbacks; history (block interval, rounds per height, missed blocks, PoCL outcomes) is fed by the
node's typed events (`node.events`) through `observe_event`, which other components may also call,
and they may register their own collectors on `NodeMetrics.registry`. Labelled series whose values are
known in advance (phases, reward roles, penalty kinds, validators) are created at zero, so a dashboard
shows 0 rather than "no data" before the first event. The node is seen through the narrow
`interfaces.MetricsNode`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from pocl.consensus.pocl.events import Jailed, PhaseStarted, RewardPaid, RoundFinalized, RoundOpened, Slashed
from pocl.consensus.pocl.records import PENALTY_SEVERITY, PHASE_DONE, PHASE_NAMES, ROLE_VOTER, ROLE_WINNER
from pocl.ledger import roles
from pocl.ledger.events import Event
from pocl.ledger.keys import address_of, format_address
from pocl.ledger.signing_validators import signing_validators
from pocl.node.config import parse_host_port
from pocl.node.events import BlockCommitted, NodeEvent, NodeEventListener
from pocl.node.http_server import serve_app
from pocl.node.interfaces import MetricsNode
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger("pocl.metrics")

NAMESPACE = "pocl"
CONSENSUS, P2P, MEMPOOL, BLOCKSYNC, LEARNING = "consensus", "p2p", "mempool", "blocksync", "learning"
BLOCK_INTERVAL_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
ROUNDS_BUCKETS = (1, 2, 3, 4, 6, 8, 16)
PHASES = tuple(PHASE_NAMES.values())  # the learning phase gauge's labels (1 for the current one)
DONE = PHASE_NAMES[PHASE_DONE]
REWARD_ROLES = (ROLE_WINNER, ROLE_VOTER)
VOID = ("false", "true")  # the rounds-finalized counter's `void` label


class NodeMetrics:
    def __init__(self, node: MetricsNode, registry: CollectorRegistry | None = None) -> None:
        self.node = node
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_open_fds, process_cpu_...
        PlatformCollector(registry=r)  # python_info
        GCCollector(registry=r)  # python_gc_*

        def under(subsystem: str) -> dict[str, Any]:
            """Where a metric lives: `pocl_<subsystem>_<name>` on this node's registry."""
            return {"namespace": NAMESPACE, "subsystem": subsystem, "registry": r}

        def gauge(subsystem: str, name: str, doc: str, fn: Callable[[], float]) -> Gauge:
            g = Gauge(name, doc, **under(subsystem))
            g.set_function(fn)
            return g

        # ---- consensus (BFT)
        gauge(CONSENSUS, "height", "Height of the latest committed block", self._height)
        gauge(
            CONSENSUS,
            "rounds",
            "BFT round of the height being decided (0 = its first round; not the PoCL round)",
            self._consensus_round,
        )
        self.validators = Gauge(
            "validators",
            "Validators that signed the latest block's height (the current BFT validator set)",
            **under(CONSENSUS),
        )
        self.validators_power = Gauge(
            "validators_power",
            "Total voting power of the current BFT validator set",
            **under(CONSENSUS),
        )
        self.blocks = Counter(
            "blocks",
            "Blocks committed by this node (decided or block-synced)",
            **under(CONSENSUS),
        )
        self.txs = Counter(
            "txs",
            "Transactions in the blocks committed by this node",
            **under(CONSENSUS),
        )
        self.block_interval = Histogram(
            "block_interval_seconds",
            "Time between consecutive block headers",
            **under(CONSENSUS),
            buckets=BLOCK_INTERVAL_BUCKETS,
        )
        self.rounds = Histogram(
            "rounds_per_height",
            "BFT rounds needed to decide a height (1 = decided in round 0)",
            **under(CONSENSUS),
            buckets=ROUNDS_BUCKETS,
        )
        self.missed = Counter(
            "missed_blocks",
            "Blocks whose commit lacks this validator's signature",
            ["validator"],
            **under(CONSENSUS),
        )
        # ---- p2p, mempool, sync
        gauge(P2P, "peers", "Connected P2P peers", self._peers)
        gauge(MEMPOOL, "size", "Transactions waiting in the mempool", self._mempool_txs)
        gauge(MEMPOOL, "size_bytes", "Bytes of the transactions waiting in the mempool", self._mempool_bytes)
        gauge(
            BLOCKSYNC,
            "syncing",
            "1 while the node catches up (state sync, then block sync) before joining consensus",
            self._syncing,
        )
        # ---- PoCL learning rounds (not BFT rounds)
        self.pocl_round = Gauge(
            "round",
            "Current PoCL (learning) round number",
            **under(LEARNING),
        )
        self.pocl_phase = Gauge(
            "phase",
            "1 for the current phase of the PoCL (learning) round, 0 for the others",
            ["phase"],
            **under(LEARNING),
        )
        self.pocl_participants = Gauge(
            "round_participants",
            "Miners eligible in the current PoCL (learning) round",
            **under(LEARNING),
        )
        self.pocl_winners = Gauge(
            "round_winners",
            "Winners of the last finalized PoCL (learning) round",
            **under(LEARNING),
        )
        self.pocl_rounds = Counter(
            "rounds_finalized",
            "PoCL (learning) rounds finalized, void (model unchanged) or not",
            ["void"],
            **under(LEARNING),
        )
        self.pocl_slashes = Counter(
            "slashes",
            "PoCL penalties applied (stake burned and jailed), by penalty kind",
            ["kind"],
            **under(LEARNING),
        )
        self.pocl_jails = Counter(
            "jails",
            "PoCL miners jailed for downtime (missed COMMIT in consecutive rounds; no stake burned)",
            **under(LEARNING),
        )
        self.pocl_rewards = Counter(
            "rewards",
            "PoCL reward amount minted, by role (winner or voter)",
            ["role"],
            **under(LEARNING),
        )
        self.pocl_round_blocks = Gauge(
            "round_duration_blocks",
            "Blocks the last finalized PoCL (learning) round took from opening to finalization",
            **under(LEARNING),
        )
        for void in VOID:
            self.pocl_rounds.labels(void)
        for kind in PENALTY_SEVERITY:
            self.pocl_slashes.labels(kind)
        for role in REWARD_ROLES:
            self.pocl_rewards.labels(role)
        for phase in PHASES:
            self.pocl_phase.labels(phase).set(0)
        self._handlers: list[NodeEventListener] = []
        self._last_time_ms: int | None = None
        self._signers: dict[bytes, bytes] | None = None  # consensus pubkey -> operator of the last signers
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

    def add_handler(self, handler: NodeEventListener) -> None:
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
        chain = self.node.chain
        if chain is None:
            return None
        vals = signing_validators(chain.state)
        if vals is None:
            return None
        # Labelled by the operator account (the address its owner knows); the consensus address when
        # no validator record names one.
        out = {pk: roles.operator_of(chain.state, address_of(pk)) or address_of(pk) for pk, _power in vals}
        self.validators.set(len(vals))
        self.validators_power.set(sum(power for _pk, power in vals))
        for addr in out.values():
            self.missed.labels(format_address(addr))  # export zeros for every validator
        return out

    def observe_event(self, event: NodeEvent) -> None:
        """Fold one node event into the metrics; never raises (a metrics bug must not stop the node)."""
        try:
            if isinstance(event, BlockCommitted):  # PoCL round/phase node events repeat its events
                self._on_block(event)
                for executor_event in event.events:
                    self._on_executor_event(executor_event, event.height)
        except Exception:
            log.exception("cannot fold event %s", type(event).__name__)
        for handler in list(self._handlers):
            try:
                handler(event)
            except Exception:
                log.exception("metrics handler failed")

    def _on_block(self, block: BlockCommitted) -> None:
        self.blocks.inc()
        self.txs.inc(block.txs)
        if self._last_time_ms is not None and block.time_ms >= self._last_time_ms:
            self.block_interval.observe((block.time_ms - self._last_time_ms) / 1000)
        self._last_time_ms = block.time_ms
        if not block.synced:
            self.rounds.observe(block.round + 1)
        self._count_missed(block.height)

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

    def _on_executor_event(self, event: Event, height: int) -> None:
        match event:
            case RoundOpened():
                self.pocl_round.set(event.round)
                self.pocl_participants.set(len(event.eligible))
                self._set_phase(PHASES[0])
                self._round_opened_at = {event.round: event.height}
            case PhaseStarted():
                self.pocl_round.set(event.round)
                self._set_phase(event.phase)
            case RoundFinalized():
                self.pocl_winners.set(len(event.winners))
                self.pocl_rounds.labels("true" if event.void else "false").inc()
                self._set_phase(DONE)
                opened = self._round_opened_at.pop(event.round, None)
                if opened is not None:
                    self.pocl_round_blocks.set(max(0, height - opened + 1))
            case Slashed():
                self.pocl_slashes.labels(event.kind).inc()
            case Jailed():
                self.pocl_jails.inc()
            case RewardPaid():
                self.pocl_rewards.labels(event.role).inc(event.amount)

    def _set_phase(self, phase: str) -> None:
        if phase not in PHASES:
            self.pocl_phase.labels(phase)
        for name in {*PHASES, phase}:
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
