"""The node: wires store, chain, mempool, P2P, block sync and consensus (DESIGN §2, §5.1, §6).

Start-up order: open (or initialise) the store from genesis, start P2P, catch up by block sync from
peers, then join consensus. Block sync keeps running in the background, so a node that fell behind
(partition, restart) catches up by fetching blocks with their commits instead of replaying consensus.

Listeners (`Node.subscribe`) hear typed `node.events.NodeEvent`s: the RPC event stream, metrics and the
miner build on them, each through the narrow Protocol of `node.interfaces` that `Node` satisfies.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pocl.consensus.pocl.execution import PoclExecution, build_executor
from pocl.consensus.pocl.params import PoclParams, PoclParamsError
from pocl.consensus.signing_state import SigningGuard
from pocl.genesis.schema import Genesis
from pocl.ledger.block import Block, Commit
from pocl.ledger.executor import Executor
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import ChainParams
from pocl.ledger.storage.store import RESYNC, Store, StoreError, StoreLocked
from pocl.node.chain import Chain, InvalidBlock
from pocl.node.config import Config, parse_host_port
from pocl.node.consensus_driver import ConsensusDriver, DecidedBlock
from pocl.node.events import BlockCommitted, NodeEvent, NodeEventListener, pocl_events
from pocl.node.fatal import FatalStop
from pocl.node.faucet import Faucet, FaucetSettings, FaucetSetupError
from pocl.node.fdlimit import open_file_limit
from pocl.node.heap_trim import trim_periodically
from pocl.node.home import VALIDATOR_STATE_FILE
from pocl.node.mempool import AddResult, Mempool, MempoolConfig
from pocl.node.metrics import NodeMetrics
from pocl.node.mining_switch import MiningSwitch
from pocl.node.pruning import SNAPSHOTS_DIR, Pruner, PruningPolicy, oldest_snapshot_on_disk
from pocl.node.reactors.consensus import ConsensusReactor
from pocl.node.reactors.statesync import StateSyncReactor
from pocl.node.reactors.tx_announce import TxAnnouncer
from pocl.node.reactors.tx_gossip import TxGossipReactor, is_malicious
from pocl.node.readiness import Readiness, ReadinessInputs, assess, expected_block_s, free_bytes
from pocl.node.rpc.faucet import faucet_routes
from pocl.node.rpc.limits import RpcLimits
from pocl.node.rpc.pocl import pocl_routes
from pocl.node.rpc.server import RpcServer
from pocl.node.rpc.tx_batch import tx_batch_routes
from pocl.node.shutdown import ShutdownController
from pocl.node.signature_verifier import ParallelSignatureVerifier
from pocl.node.snapshots import SnapshotDir, SnapshotSettings, Snapshotter
from pocl.node.statesync import RestoreResult, StateSyncClient, StateSyncError, StateSyncSettings
from pocl.p2p.addrbook import AddressBook
from pocl.p2p.bans import BanList
from pocl.p2p.connection import ConnectionConfig
from pocl.p2p.gossip import Gossip
from pocl.p2p.host import Host, HostConfig
from pocl.p2p.malloc_tuning import keep_large_buffers_in_heap
from pocl.p2p.pex import PeerExchange, PexConfig
from pocl.p2p.sync import SyncConfig, SyncService

log = logging.getLogger("pocl.node")

SYNC_POLL_S = 1.0


def limit_blas_threads() -> None:
    """One BLAS thread: canonical inference in block execution is small-batch work that multi-threaded
    OpenBLAS slows down ~10x on a busy machine (and values entering state never use BLAS anyway)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1)


class NodeError(Exception):
    """The node cannot start (foreign database, bad configuration); the message is for the operator."""


def home_in_use_message(home: Path, pid: int | None) -> str:
    """A second `run` on a home whose database is open elsewhere: one line naming the holder."""
    return f"home {home} is in use by another pocl-node" + (f" (pid {pid})" if pid else "")


def effective_params(genesis: Genesis, config: Config) -> ChainParams:
    """Consensus timeouts may be overridden locally (they are not part of block validity)."""
    return dataclasses.replace(genesis.params, **config.consensus.timeout_overrides())


class Node:
    def __init__(
        self,
        *,
        home: Path,
        config: Config,
        genesis: Genesis,
        node_key: PrivateKey,
        consensus_key: PrivateKey | None,
        account_key: PrivateKey | None = None,
        executor: Executor | None = None,
        double_sign: bool = False,
        faucet_key: PrivateKey | None = None,
    ) -> None:
        self.home = Path(home)
        self.config = config
        self.genesis = genesis
        self.node_key = node_key
        # The consensus key signs proposals and votes: the node validates when its address is in the
        # validator set. The account key (the operator's) signs txs: mining, evidence. Never the same key.
        if (
            consensus_key is not None
            and account_key is not None
            and consensus_key.pubkey == account_key.pubkey
        ):
            raise NodeError("the consensus key must not be the account key (see: pocl-node keys list)")
        self.consensus_key = consensus_key
        self.account_key = account_key
        try:
            self.pocl = PoclExecution(PoclParams.from_json(genesis.pocl), genesis.params)
        except PoclParamsError as exc:
            raise NodeError(f"genesis.json {exc}") from exc
        self.executor = executor or build_executor(self.pocl, ParallelSignatureVerifier())
        self.double_sign = double_sign
        self.params = genesis.params
        self.chain: Chain | None = None
        self.mempool: Mempool | None = None
        self.host: Host | None = None
        self.gossip: Gossip | None = None
        self.sync: SyncService | None = None
        self.pex: PeerExchange | None = None
        self.driver: ConsensusDriver | None = None
        self.consensus: ConsensusReactor | None = None
        self.rpc: RpcServer | None = None
        self.tx_gossip: TxGossipReactor | None = None
        self.miner: Any = None  # node.miner.Miner when [mining] enabled or switched on
        # stop requests: drain a PoCL round the miner committed to first (node.shutdown)
        self.shutdown = ShutdownController(self, config.mining.drain_timeout_s)
        # a storage/signing-state failure: one CRITICAL line, stop now, `run` exits non-zero (node.fatal)
        self.fatal = FatalStop(lambda: self.shutdown.request_stop("fatal fault", force=True))
        self.mining_switch = MiningSwitch(self, is_stopping=self.shutdown.is_stopping)
        self.faucet_key = faucet_key  # signs the grants of `POST /faucet` when [faucet] enabled
        self.faucet: Faucet | None = None
        self.metrics: NodeMetrics | None = None
        self.snapshotter: Snapshotter | None = None  # [statesync] snapshot_interval > 0
        self.statesync: StateSyncReactor | None = None  # serves our snapshots to peers
        self.restored: RestoreResult | None = None  # set when this start restored a snapshot
        self.pruner: Pruner | None = None
        self._history_gap_logged: int | None = None  # block sync found our next height pruned everywhere
        self.syncing = True
        self.started_at = time.time()
        self.best_peer_height = 0  # what block sync last heard from peers (readiness: lag)
        self.last_height_at = time.monotonic()  # when the height last moved (readiness: stalled)
        self._listeners: list[NodeEventListener] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._running = False

    # ------------------------------------------------------------------ lifecycle

    def _open_chain(self) -> Chain:
        db_path = self.config.resolve(self.home, self.config.storage.db_path)
        db_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            store = Store.open(db_path)
        except StoreLocked as exc:
            raise NodeError(home_in_use_message(self.home, exc.pid)) from None
        except StoreError as exc:
            raise NodeError(exc.with_recovery(RESYNC).for_home(self.home)) from exc
        if not store.initialized:
            state = self.genesis.initial_state()
            store.init_genesis(state, self.genesis.hash)
            log.info("initialised database from genesis chain_id=%s", self.genesis.chain_id)
        elif store.genesis_hash != self.genesis.hash or store.chain_id != self.genesis.chain_id:
            store.close()
            raise NodeError(
                f"database {db_path} belongs to another genesis (run unsafe-reset-all to wipe it)"
            )
        try:
            state = store.load_state(self.params)
        except StoreError as exc:
            store.close()
            raise NodeError(exc.with_recovery(RESYNC).for_home(self.home)) from exc
        return Chain(
            store,
            state,
            self.executor,
            self.params,
            self.genesis.genesis_time_ms,
            round_info=self.pocl.round_info,
        )

    def _rpc_limits(self) -> RpcLimits:
        limits = RpcLimits.from_section(self.config.rpc)
        capped = limits.within_fd_limit(open_file_limit())
        if capped.max_connections != limits.max_connections:
            log.warning(
                "[rpc] max_connections %s lowered to %d: a quarter of the open-file limit, so RPC clients "
                "cannot take the descriptors P2P, LevelDB and the signing state need (raise the limit "
                "to allow more)",
                limits.max_connections or "unlimited",
                capped.max_connections,
            )
        return capped

    def _host_config(self) -> HostConfig:
        p2p = self.config.p2p
        host, port = parse_host_port(p2p.listen_addr)
        external_host, external_port = (
            parse_host_port(p2p.external_addr) if p2p.external_addr else (None, None)
        )
        return HostConfig(
            listen_host=host,
            listen_port=port,
            external_host=external_host,
            external_port=external_port,
            max_inbound=p2p.max_inbound,
            max_outbound=p2p.max_outbound,
            persistent_peers=tuple(p2p.persistent_peers),
            dial_timeout=p2p.dial_timeout_s,
            reconnect_base=0.5,
            reconnect_max=5.0,
            ban_base=p2p.ban_duration_s,
            transport=ConnectionConfig(
                handshake_timeout_s=p2p.handshake_timeout_s,
                idle_timeout_s=p2p.idle_timeout_s,
                ping_interval_s=p2p.ping_interval_s,
                loopback_congestion_control=tuple(p2p.loopback_congestion_control),
            ),
        )

    async def start(self) -> None:
        self.fatal.install(asyncio.get_running_loop())
        limit_blas_threads()
        keep_large_buffers_in_heap()
        self._tasks.append(asyncio.create_task(trim_periodically(), name="heap-trim"))
        self.faucet = self._make_faucet()  # a bad [faucet] section fails before anything starts
        self.chain = chain = self._open_chain()
        self.mempool = Mempool(
            self.executor,
            chain.state,
            MempoolConfig(max_txs=self.config.mempool.max_txs, max_bytes=self.config.mempool.max_bytes),
        )
        host_config = self._host_config()
        self.host = Host(
            self.node_key,
            chain_id=self.genesis.chain_id,
            genesis_hash=self.genesis.hash,
            config=host_config,
            chain_tip=lambda: (chain.height, chain.head_hash or bytes(32)),
            addrbook=AddressBook(self.home / "data" / "addrbook.json", self_id=self.node_key.pubkey),
            bans=BanList(
                threshold=host_config.ban_threshold,
                half_life=host_config.ban_half_life,
                ban_base=host_config.ban_base,
                path=self.home / "data" / "bans.json",
            ),
        )
        self.gossip = Gossip(self.host)
        self.tx_gossip = TxGossipReactor(
            self.gossip, self.mempool.add, self.executor.max_any_tx_bytes(self.params)
        )
        if self.config.p2p.tx_announce_min_bytes > 0:
            self.tx_gossip.announcer = TxAnnouncer(
                self.host,
                self.mempool.add,
                self._mempool_tx,
                self.executor.max_any_tx_bytes(self.params),
                is_malicious=is_malicious,
                min_bytes=self.config.p2p.tx_announce_min_bytes,
            )
        self.sync = SyncService(
            self.host,
            status=lambda: (chain.height, chain.head_hash or bytes(32)),
            get_block_with_commit=chain.get_block_with_commit,
            base_height=lambda: chain.store.earliest_height,
        )
        self.pruner = self._make_pruner(chain)
        self._make_statesync(chain)
        if self.config.p2p.pex:
            self.pex = PeerExchange(self.host, PexConfig(seeds=tuple(self.config.p2p.seeds), interval=5.0))
        signer = None
        if self.consensus_key is not None:
            signer = SigningGuard(
                self.home / "data" / VALIDATOR_STATE_FILE,
                self.consensus_key,
                self.genesis.chain_id,
                allow_double_sign=self.double_sign,
            )
        self.consensus = ConsensusReactor(
            self.host,
            self.gossip,
            max_block_bytes=self.params.max_block_bytes,
            stored_block=chain.store.block_by_hash,
            tx_lookup=self._mempool_tx,
            compact=self.config.p2p.compact_blocks,
        )
        self.driver = ConsensusDriver(
            chain=chain,
            mempool=self.mempool,
            network=self.consensus,
            params=effective_params(self.genesis, self.config),
            signer=signer,
            account_key=self.account_key,
            max_block_bytes=self.params.max_block_bytes,
            on_decided=self._on_decided,
            submit_tx=self.submit_tx,
            double_sign=self.double_sign,
            on_fatal=self.fatal.trigger,
        )
        self.consensus.bind(self.driver)
        await self.host.start()
        if self.pex is not None:
            self.pex.start()
        if self.config.rpc.enabled:
            self.rpc = RpcServer(
                self,
                self.config.rpc.listen_addr,
                limits=self._rpc_limits(),
                max_ws_clients=self.config.rpc.max_ws_clients,
                unsafe=self.config.rpc.unsafe,
                cors_allowed_origins=self.config.rpc.cors_allowed_origins,
                extra_routes=pocl_routes(self) + tx_batch_routes(self) + faucet_routes(self.faucet),
            )
            await self.rpc.start()
        if self.config.mining.enabled:
            await self.start_miner()
        if self.config.metrics.enabled:
            self.metrics = NodeMetrics(self)
            await self.metrics.start(self.config.metrics.listen_addr)
            if self.rpc is not None:
                self.rpc.register_metrics(self.metrics.registry)
        self._running = True
        log.info(
            "node started node_id=%s height=%d p2p=%s",
            self.node_key.pubkey.hex()[:16],
            chain.height,
            self.host.listen_addr,
        )
        self._tasks.append(asyncio.create_task(self._start_consensus(), name="start-consensus"))

    async def _start_consensus(self) -> None:
        """Catch up from peers first (briefly), then run consensus with sync in the background."""
        await self._state_sync()
        await self._sync_once(peer_wait=2.0)
        self.syncing = False
        self.last_height_at = time.monotonic()
        assert self.driver is not None and self.consensus is not None
        self.consensus.start()
        self.driver.start()
        self._tasks.append(asyncio.create_task(self._sync_loop(), name="block-sync"))

    async def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        self.mining_switch.close()
        if self.miner is not None:
            await self.miner.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.consensus is not None:
            self.consensus.stop()
        if self.driver is not None:
            self.driver.stop()
        if self.rpc is not None:
            await self.rpc.stop()
        if self.metrics is not None:
            await self.metrics.stop()
        if self.host is not None:
            await self.host.stop()
        if self.pruner is not None:
            await self.pruner.stop()  # its worker thread must be done before the store closes
        if self.snapshotter is not None:
            await asyncio.to_thread(self.snapshotter.stop)  # its thread reads the store
        if self.chain is not None:
            self.chain.store.close()
        self.fatal.uninstall()
        log.info("node stopped")

    def _make_pruner(self, chain: Chain) -> Pruner | None:
        """The background pruner for `[pruning]` (None on an archive node), run after committed blocks."""
        policy = PruningPolicy.from_config(self.config.pruning)
        if policy.archive:
            return None
        snapshots = self.home / SNAPSHOTS_DIR
        pruner = Pruner(
            chain.store,
            policy,
            self.params,
            self.pocl,
            lambda: chain.state,
            oldest_snapshot_height=lambda: oldest_snapshot_on_disk(snapshots),
        )
        self.subscribe(
            lambda event: pruner.on_block(event.height) if isinstance(event, BlockCommitted) else None
        )
        log.info(
            "pruning on: retain_blocks=%d model_history=%d interval_blocks=%d",
            policy.retain_blocks,
            policy.model_history,
            policy.interval_blocks,
        )
        return pruner

    def _make_faucet(self) -> Faucet | None:
        """The faucet when `[faucet] enabled` (its routes answer 403 faucet_disabled otherwise)."""
        if not self.config.faucet.enabled:
            return None
        if self.faucet_key is None:
            raise NodeError(f"[faucet] enabled = true but no key {self.config.faucet.key!r} was loaded")
        try:
            settings = FaucetSettings.from_config(self.config.faucet, self.params.min_fee)
        except FaucetSetupError as exc:
            raise NodeError(str(exc)) from None
        log.info("faucet enabled address=0x%s amount=%d", self.faucet_key.address.hex(), settings.amount)
        return Faucet(self, self.faucet_key, settings)

    async def start_miner(self) -> None:
        """Mining takes part in PoCL rounds with the account key: it must be a registered miner with stake."""
        from pocl.node.miner import Miner, MinerError, MinerSettings

        if self.account_key is None:
            raise NodeError("mining needs the account key (keys/account_key.json)")
        mining = self.config.mining
        data_dir = self.config.resolve(self.home, mining.data_dir) if mining.data_dir else None
        try:
            self.miner = Miner(
                self,
                self.account_key,
                MinerSettings.from_config(mining, data_dir),
                self.home / "data" / "miner",
            )
            await self.miner.start()
        except MinerError as exc:
            self.miner = None
            raise NodeError(str(exc)) from None

    # ------------------------------------------------------------------ snapshots and state sync

    def _make_statesync(self, chain: Chain) -> None:
        """Serve snapshots (always registered); take them every `snapshot_interval` blocks."""
        ss = self.config.statesync
        if bool(ss.trust_height) != bool(ss.trust_hash):
            raise NodeError("[statesync] trust_height and trust_hash go together (set both or neither)")
        snapshots = SnapshotDir(self.home / "data" / "snapshots") if ss.snapshot_interval > 0 else None
        assert self.host is not None
        self.statesync = StateSyncReactor(self.host, chain.store, snapshots)
        if snapshots is not None:
            self.snapshotter = Snapshotter(
                chain.store, snapshots, SnapshotSettings(ss.snapshot_interval, ss.snapshot_keep_recent)
            )
            self.subscribe(self.snapshotter.on_event)

    async def _state_sync(self) -> None:
        """With `[statesync] enable` and nothing but genesis in the store: restore a peer snapshot, then
        reload the chain from the store (block sync takes it from there). Failing that, block sync from
        genesis, as without state sync."""
        chain = self.chain
        assert chain is not None and self.host is not None
        workdir = self.home / "data" / "statesync"
        if not self.config.statesync.enable or chain.height > 0:
            if chain.height > 0 and workdir.exists():
                shutil.rmtree(workdir, ignore_errors=True)  # a restore that finished, or block sync won
            return
        ss = self.config.statesync
        genesis_validators = chain.validators()
        assert genesis_validators is not None
        client = StateSyncClient(
            self.host,
            chain.store,
            chain_id=self.genesis.chain_id,
            genesis_validators=genesis_validators,
            workdir=workdir,
            settings=StateSyncSettings(
                trust_height=ss.trust_height,
                trust_hash=bytes.fromhex(ss.trust_hash),
                discovery_time_s=ss.discovery_time_s,
                chunk_fetchers=ss.chunk_fetchers,
                chunk_timeout_s=ss.chunk_timeout_s,
            ),
        )
        try:
            result = await client.run()
        except StateSyncError as exc:
            log.warning("state sync failed (%s); block-syncing from genesis", exc)
            return
        except Exception:  # a bug or a disk error in state sync must not keep the node from syncing
            log.exception("state sync failed; block-syncing from genesis")
            return
        if result is None:
            return
        chain.state = chain.store.load_state(self.params)
        head = chain.store.head_block()
        assert head is not None
        chain.head_hash, chain.head_time_ms = head.hash, head.header.time_ms
        if self.mempool is not None:
            self.mempool.update(chain.state)
        self.restored = result
        log.info("state sync: restored height %d; block-syncing to the tip", result.height)

    # ------------------------------------------------------------------ readiness

    def readiness(self) -> Readiness:
        """Ready for traffic? (`GET /ready`; `/health` is liveness only, see node.readiness)."""
        height = self.chain.height if self.chain is not None else 0
        db_path = self.config.resolve(self.home, self.config.storage.db_path)
        return assess(
            ReadinessInputs(
                syncing=self.syncing,
                height=height,
                best_peer_height=self.best_peer_height,
                seconds_since_block=time.monotonic() - self.last_height_at,
                expected_block_s=expected_block_s(effective_params(self.genesis, self.config)),
                stall_after_blocks=self.config.node.stall_after_blocks,
                disk_free_bytes=free_bytes(db_path),
                min_free_bytes=self.config.node.min_free_disk_mb * 1024 * 1024,
                fault=self.fatal.fault.line() if self.fatal.fault is not None else None,
            )
        )

    # ------------------------------------------------------------------ block sync

    async def _sync_loop(self) -> None:
        while self._running:
            await asyncio.sleep(SYNC_POLL_S)  # polling cadence, not a wait for a condition
            with contextlib.suppress(asyncio.CancelledError):
                applied = await self._sync_once(peer_wait=0.5)
                if applied and self.driver is not None:
                    self.driver.on_synced()

    async def _sync_once(self, peer_wait: float) -> int:
        assert self.sync is not None and self.chain is not None
        chain = self.chain
        syncer = self.sync.syncer(
            start_height=chain.height + 1,
            apply=self._apply_synced,
            verify=self._verify_synced,
            prev_hash=chain.head_hash or None,
            config=SyncConfig(peer_wait=peer_wait, status_interval=1.0, request_timeout=5.0, cooldown=5.0),
        )
        try:
            result = await syncer.run()
        except Exception as exc:  # sync trouble must not kill the node; retry next poll
            if self.fatal.check(exc, "block sync commit"):  # but a failed disk must
                return 0
            log.exception("block sync failed")
            return 0
        self.best_peer_height = result.best_peer_height
        if result.applied:
            log.info("block sync applied %d blocks, height=%d", result.applied, chain.height)
        gap = result.history_starts_at
        if gap is not None and gap != self._history_gap_logged:
            log.error(
                "block sync cannot continue: peers ahead of us pruned height %d (their history starts at %d); "
                "this node needs state sync (or a peer with [pruning] retain_blocks = 0)",
                chain.height + 1,
                gap,
            )
        self._history_gap_logged = gap
        return result.applied

    def _verify_synced(self, block: Block, commit: Commit) -> bool:
        assert self.chain is not None
        if block.height <= self.chain.height:
            return True  # consensus got there first; apply will skip it
        try:
            self.chain.verify_commit_for(block, commit)
            self.chain.check_block(block, verified=self.mempool.verified if self.mempool else None)
        except InvalidBlock as exc:
            log.warning("block sync: rejecting block %d: %s", block.height, exc)
            return False
        return True

    async def _apply_synced(self, block: Block, commit: Commit) -> None:
        chain = self.chain
        assert chain is not None and self.mempool is not None
        if block.height <= chain.height:
            existing = chain.store.block(block.height)
            if existing is not None and existing.hash != block.hash:
                log.critical(
                    "FORK: peer served block %d %s, ours is %s",
                    block.height,
                    block.hash.hex()[:12],
                    existing.hash.hex()[:12],
                )
            return
        result = chain.commit_block(block, commit, verified=self.mempool.verified)  # type: ignore[arg-type]
        self.mempool.update(chain.state)
        self._on_decided(DecidedBlock(block, commit, result, commit.round, 0.0), synced=True)

    # ------------------------------------------------------------------ transactions

    def _mempool_tx(self, tx_hash: bytes) -> bytes | None:
        """A pending tx's bytes by hash (compact proposals are rebuilt from these)."""
        stx = self.mempool.get(tx_hash) if self.mempool is not None else None
        return stx.raw if stx is not None else None

    def submit_tx(self, raw: bytes) -> AddResult:
        """Admit a locally submitted tx (RPC, evidence) and gossip it."""
        assert self.mempool is not None and self.tx_gossip is not None
        res = self.mempool.add(raw)
        if res.ok and res.is_new:
            self.tx_gossip.publish(raw)
        return res

    # ------------------------------------------------------------------ events

    def subscribe(self, listener: NodeEventListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _publish(self, event: NodeEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a listener's bug must not stop the chain
                log.exception("event listener failed")

    def _on_decided(self, decided: DecidedBlock, synced: bool = False) -> None:
        block, result = decided.block, decided.result
        self.last_height_at = time.monotonic()
        committed = BlockCommitted(
            height=block.height,
            hash=block.hash,
            time_ms=block.header.time_ms,
            txs=len(block.txs),
            round=decided.round,
            interval_s=decided.interval_s,
            synced=synced,
            tx_hashes=tuple(result.tx_hashes),
            events=tuple(result.events),
        )
        for event in (committed, *pocl_events(committed)):
            self._publish(event)
