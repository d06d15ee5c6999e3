"""The miner loop: takes part in PoCL rounds from inside a mining node (DESIGN §5.2, §8).

The miner only *submits transactions*; it computes nothing that enters state (every node verifies
its commit, predictions and votes in block execution). After each committed block (and on a 1 s
poll) it looks at the committed PoCL state and does the step the round needs from it:

- round r is next or open, and this miner has no secrets for it: train from G_{r-1} in the training
  worker process (`ml.train_worker`; the event loop stays responsive), draw round r's fresh test shard
  from the held-out pool (`ml.shards`), pick a salt, and persist all of it (`node.miner_store`) BEFORE
  anything is submitted. Training starts as soon as G_{r-1} is final, i.e. usually before s_r. The
  shard must be one the chain has not seen in the recent rounds (it would refuse it in SHARD and
  penalise the miner as a withholder): a seen draw is replaced by the next rounds' slots, and with no
  fresh one the miner logs an error and sits the round out (`miner_payloads.fresh_shard_indices`);
- COMMIT, eligible, not committed yet: `pocl.commit` (commitments to the model, labels and shard);
- SHARD, committed, shard not opened yet: `pocl.shard` = the committed shard's inputs;
- PREDICT, shard opened, not predicted yet: `pocl.predict` = the committed weights plus
  canonical-inference labels for every other shard owner's shard (address order);
- VOTE, revealed, not voted yet: `pocl.vote` = labels, salt and the scores every node will recompute.

A restarted miner reloads its secrets from disk and carries on where the round is. `pause` stops it
committing to new rounds while it finishes the one it is in (`open_duty` says what it still owes);
`node.shutdown` and `node.mining_switch` use that to stop or switch mining off without a penalty. Adversarial
behaviours (`ml.adversary`, `[mining] behavior`) replace exactly the step they cheat at.
Each step logs one line on the `pocl.miner` logger (shown as `miner: ...`; messages carry no prefix).

`check_miner_extra` runs before the node starts anything: mining needs the optional `miner` extra
(TensorFlow for training, scikit-learn for the bundled digits dataset), and without it the node refuses
to start with one line instead of failing later inside a running node.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import importlib.util
import logging
import secrets as secrets_mod
import time
from pathlib import Path
from typing import Any

from pocl.consensus.pocl.events import RewardPaid, Slashed
from pocl.consensus.pocl.records import PHASE_COMMIT, PHASE_PREDICT, PHASE_SHARD, PHASE_VOTE, RoundRecord
from pocl.consensus.pocl.txs import (
    KIND_POCL_COMMIT,
    KIND_POCL_PREDICT,
    KIND_POCL_SHARD,
    KIND_POCL_VOTE,
    SALT_LEN,
)
from pocl.ledger.codec import Struct
from pocl.ledger.keys import PrivateKey, format_address
from pocl.ledger.tx import TX_VERSION, Tx, sign_tx
from pocl.ml.training import TrainJob
from pocl.node.config import MiningSection
from pocl.node.events import BlockCommitted, NodeEvent
from pocl.node.interfaces import MinerNode
from pocl.node.miner_duty import OpenDuty, WithholdCost, open_duty, withhold_cost
from pocl.node.miner_payloads import (
    NoFreshShard,
    chain_shard_is_fresh,
    commit_payload,
    freshness_check,
    predict_payload,
    round_secrets,
    shard_payload,
    vote_payload,
)
from pocl.node.miner_store import KEEP_ROUNDS, MinerStore, MinerStoreError, RoundSecrets

log = logging.getLogger("pocl.miner")

POLL_S = 1.0
DEFAULT_LR = 0.05
DEFAULT_TRAIN_THREADS = 1
RESUBMIT_AFTER_BLOCKS = 3  # a submitted tx neither pending nor on chain after this many blocks is resent
MAX_ROUND_STATS = 100
MINER_EXTRA_HINT = "mining needs the miner extra: pip install 'pocl[miner]'"
TRAINING_MODULES = ("tensorflow", "keras")  # tensorflow-cpu brings keras
DIGITS_MODULES = ("sklearn",)  # the bundled digits dataset ships with scikit-learn


class MinerError(Exception):
    """The miner cannot start (no account key, bad dataset/partition/behaviour settings)."""


def _module_missing(name: str) -> bool:
    """True when `name` cannot be imported; looks the module up without importing it (TF is slow)."""
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):  # a blocked or half-installed package
        return True


def miner_modules(dataset: str, behavior: str) -> tuple[str, ...]:
    """The optional modules mining with this dataset and behaviour imports."""
    from pocl.ml.adversary import AdversaryError, Behaviour
    from pocl.ml.datasets import DIGITS

    needed: list[str] = []
    try:
        trains = Behaviour(behavior).trains
    except AdversaryError:
        trains = True  # the miner reports the bad behaviour itself
    if trains:
        needed.extend(TRAINING_MODULES)
    if dataset == DIGITS:
        needed.extend(DIGITS_MODULES)
    return tuple(needed)


def check_miner_extra(dataset: str, behavior: str) -> None:
    """Raise `MinerError` naming the missing modules when the `miner` extra is not installed."""
    missing = [name for name in miner_modules(dataset, behavior) if _module_missing(name)]
    if missing:
        raise MinerError(f"{MINER_EXTRA_HINT} (missing module: {', '.join(missing)})")


@dataclasses.dataclass(frozen=True)
class MinerSettings:
    dataset: str = "digits"
    data_dir: Path | None = None
    partition: str = "iid"
    shard: int = 0
    num_shards: int = 1
    epochs: int = 1
    batch_size: int = 32
    lr: float = DEFAULT_LR
    behavior: str = "honest"
    seed: int = 0  # partition seed (the same in every miner) and local randomness
    train_threads: int = DEFAULT_TRAIN_THREADS

    @classmethod
    def from_config(cls, section: MiningSection, data_dir: Path | None) -> MinerSettings:
        return cls(
            dataset=section.dataset,
            data_dir=data_dir,
            partition=section.partition,
            shard=section.shard,
            num_shards=section.num_shards,
            epochs=section.epochs,
            batch_size=section.batch_size,
            behavior=section.behavior,
            seed=section.seed,
        )


def sub_seed(seed: int, *labels: object) -> int:
    """A 63-bit local seed derived from the miner seed and labels (shuffling, adversarial models)."""
    digest = hashlib.sha256(repr((seed, *labels)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclasses.dataclass
class RoundStats:
    """What this miner did in a round (for `/miner` and the benchmarks; never enters state)."""

    round: int
    train_s: float = 0.0
    trained_at: float = 0.0  # unix time training finished
    commit_height: int = 0
    shard_height: int = 0
    predict_height: int = 0
    vote_height: int = 0
    reward: int = 0
    slashed: int = 0
    penalty: str = ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Miner:
    def __init__(self, node: MinerNode, key: PrivateKey, settings: MinerSettings, store_dir: Path) -> None:
        from pocl.ml.adversary import AdversaryError, Behaviour

        self.node = node
        self.key = key
        self.address = key.address
        self.settings = settings
        try:
            self.behaviour = Behaviour(settings.behavior)
        except AdversaryError as exc:
            raise MinerError(f"mining.behavior: {exc}") from None
        if not 0 <= settings.shard < settings.num_shards:
            raise MinerError(f"mining shard {settings.shard} outside 0..{settings.num_shards - 1}")
        check_miner_extra(settings.dataset, settings.behavior)
        self.params = node.pocl.params
        self.spec = self.params.model_spec()
        self.store = MinerStore(store_dir)
        self.data: Any = None  # ml.shards.MinerData
        self.worker: Any = None  # ml.train_worker.TrainingWorker
        self.stats: dict[int, RoundStats] = {}
        self.last_step = "starting"
        self._secrets: dict[int, RoundSecrets] = {}
        self._train_task: asyncio.Task[None] | None = None
        self._train_key: tuple[int, bytes] | None = None
        self._no_fresh_shard: set[tuple[int, bytes]] = set()  # (round, G_{r-1} hash): sits it out
        self._submitted: dict[tuple[int, str], tuple[bytes, int]] = {}
        self._said: set[tuple[int, str]] = set()  # (round, message) logged once
        self._kept_from = 0  # rounds below this are forgotten (`_forget_before`)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Any = None
        self._warmup_task: asyncio.Task[None] | None = None
        self.worker_ready = not self.behaviour.trains
        self.committing = True  # False after `pause`: finish the open round, commit to no new one

    # ------------------------------------------------------------------ lifecycle

    def _load_data(self) -> Any:
        from pocl.ml.datasets import DatasetError, load_dataset
        from pocl.ml.partition import PartitionError
        from pocl.ml.shards import ShardError, miner_data

        s = self.settings
        try:
            ds = load_dataset(s.dataset, s.data_dir)
            if tuple(ds.input_shape) != tuple(self.params.input_shape):
                raise MinerError(
                    f"dataset {s.dataset} has inputs {list(ds.input_shape)} but the chain's model "
                    f"{self.params.model} expects {list(self.params.input_shape)}"
                )
            return miner_data(ds, s.num_shards, s.shard, scheme=s.partition, seed=s.seed)
        except (DatasetError, PartitionError, ShardError) as exc:
            raise MinerError(f"mining data: {exc}") from None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.data = await loop.run_in_executor(None, self._load_data)
        if self.behaviour.trains:
            from pocl.ml.train_worker import TrainingWorker

            self.worker = TrainingWorker(threads=self.settings.train_threads)
            self._warmup_task = asyncio.create_task(self._warm_up(), name="miner-warmup")
        self._unsubscribe = self.node.subscribe(self._on_event)
        self._task = asyncio.create_task(self._run(), name="miner")
        log.info(
            "started address=%s behaviour=%s dataset=%s shard=%d/%d partition=%s train=%d pool=%d",
            format_address(self.address),
            self.behaviour.kind,
            self.settings.dataset,
            self.settings.shard,
            self.settings.num_shards,
            self.settings.partition,
            len(self.data.y_train),
            len(self.data.pool_y),
        )

    async def _warm_up(self) -> None:
        """Start the training worker (TensorFlow import, seconds) before the first round needs it."""
        t0 = time.monotonic()
        try:
            await self.worker.start()
        except Exception as exc:  # the first job retries the start and reports it
            log.warning("training worker did not start: %s", exc)
            return
        try:  # one tiny job traces the Keras model, so round 1's training is as fast as later ones
            from pocl.ml.model.weights import initial_weights

            n = min(len(self.data.y_train), self.settings.batch_size)
            await self.worker.train(
                TrainJob(
                    self.spec,
                    initial_weights(self.spec, 0),
                    self.data.x_train[:n],
                    self.data.y_train[:n],
                    epochs=1,
                    batch_size=self.settings.batch_size,
                    lr=self.settings.lr,
                    seed=0,
                )
            )
        except Exception as exc:
            log.warning("warm-up training job failed: %s", exc)
        self.worker_ready = True
        log.info("training worker ready in %.1fs", time.monotonic() - t0)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for task in (self._task, self._train_task, self._warmup_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.worker is not None:
            with contextlib.suppress(Exception):
                await self.worker.close()
        log.info("stopped")

    def pause(self) -> None:
        """Commit to no new round (and train for none); duties of a round already committed to go on."""
        if self.committing:
            self.committing = False
            self.last_step = "paused: committing to no new round"
            log.info("paused: finishing the open round (if committed), committing to no new one")
            self._wake.set()

    def resume(self) -> None:
        """Commit to rounds again, from the next one this miner is eligible for."""
        if not self.committing:
            self.committing = True
            self.last_step = "resumed"
            log.info("resumed: committing to rounds again")
            self._wake.set()

    def open_duty(self) -> OpenDuty | None:
        """What this miner still owes the open round (None: it may stop without a penalty)."""
        node = self.node
        if node.chain is None:
            return None
        rec = node.pocl.open_record(node.chain.state)
        in_flight = rec is not None and self._commit_in_flight(rec.round)
        return open_duty(rec, self.address, in_flight)

    def _commit_in_flight(self, round_: int) -> bool:
        sent = self._submitted.get((round_, KIND_POCL_COMMIT))
        return sent is not None and self.node.mempool is not None and sent[0] in self.node.mempool

    def withhold_cost(self, round_: int) -> WithholdCost:
        """The penalty for leaving `round_` now, from this miner's stake in the committed state."""
        acct = self.node.chain.state.account(self.address) if self.node.chain is not None else None
        stake = acct.stake if acct is not None else 0
        unbonding = [entry[0] for entry in acct.unbonding] if acct is not None else []
        return withhold_cost(self.params, round_, stake, unbonding)

    def _on_event(self, event: NodeEvent) -> None:
        if not isinstance(event, BlockCommitted):
            return
        self._wake.set()
        for ev in event.events:
            match ev:
                case RewardPaid(address=self.address):
                    st = self._stat(ev.round)
                    st.reward += ev.amount
                    log.info("round %d rewarded %d as %s", ev.round, ev.amount, ev.role)
                case Slashed(address=self.address):
                    st = self._stat(ev.round)
                    st.slashed += ev.slashed
                    st.penalty = ev.kind
                    log.warning("round %d SLASHED %d for %s", ev.round, ev.slashed, ev.kind)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)
            self._wake.clear()
            try:
                self._step()
            except asyncio.CancelledError:
                raise
            except Exception:  # a miner bug must not stop the node
                log.exception("step failed")

    # ------------------------------------------------------------------ status

    def _stat(self, round_: int) -> RoundStats:
        st = self.stats.get(round_)
        if st is None:
            st = self.stats[round_] = RoundStats(round_)
            for old in sorted(self.stats)[:-MAX_ROUND_STATS]:
                del self.stats[old]
        return st

    def status_json(self) -> dict[str, Any]:
        duty = self.open_duty()
        return {
            "committing": self.committing,
            "open_commitment": duty.to_json() if duty is not None else None,
            "address": format_address(self.address),
            "behavior": self.behaviour.kind,
            "dataset": self.settings.dataset,
            "shard": self.settings.shard,
            "num_shards": self.settings.num_shards,
            "partition": self.settings.partition,
            "epochs": self.settings.epochs,
            "batch_size": self.settings.batch_size,
            "train_samples": len(self.data.y_train) if self.data is not None else 0,
            "worker_ready": self.worker_ready,
            "last_step": self.last_step,
            "rounds": [self.stats[r].to_json() for r in sorted(self.stats)],
        }

    def _once(self, round_: int, message: str, level: int = logging.INFO) -> None:
        if (round_, message) not in self._said:
            self._said.add((round_, message))
            log.log(level, "round %d %s", round_, message)

    # ------------------------------------------------------------------ the step

    def _step(self) -> None:
        node = self.node
        if node.chain is None or node.mempool is None or self.data is None or node.syncing:
            return  # while catching up, the state is not the round's current one
        state = node.chain.state
        pocl = node.pocl
        head = pocl.head(state)
        if head is None:
            return
        rec = pocl.open_record(state)
        self._forget_before(max(head.round, rec.round if rec is not None else 0) - KEEP_ROUNDS + 1)
        if rec is None:  # between rounds: prepare the next one from the final G_{r-1}
            if self.committing and self._may_be_eligible(state, head.round):
                self._ensure_training(head.round, head.model_hash)
            return
        if rec.phase == PHASE_COMMIT:
            if self.address not in rec.eligible:
                self._once(rec.round, "opened; this miner is not eligible (stake or jail)")
                return
            if self.address in rec.committers:
                return
            if not self.committing:
                self._once(rec.round, "opened; paused, not committing to it")
                return
            self._ensure_training(rec.round, rec.prev_model_hash)
            sec = self._secrets_for(rec.round, rec.prev_model_hash)
            if sec is not None:
                self._commit(rec, sec)
        elif rec.phase == PHASE_SHARD and self.address in rec.committers:
            if self.address not in rec.shard_owners:
                self._open_shard(rec)
        elif rec.phase == PHASE_PREDICT and self.address in rec.shard_owners:
            if self.address not in rec.predictors:
                self._predict(rec, state)
        elif rec.phase == PHASE_VOTE and self.address in rec.revealed and self.address not in rec.voters:
            self._vote(rec, state)

    def _forget_before(self, round_: int) -> None:
        """Drop what this miner holds for rounds before `round_`: a round's secrets carry its weights and
        test shard (~150 KB with cnn-digits) and a devnet runs a round every few blocks, so keeping them
        grew RSS by MBs per 1,000 blocks (issue 16 soak). Safe: a closed round takes no more txs from us,
        and the last KEEP_ROUNDS rounds stay (as on disk, `MinerStore.prune`)."""
        if round_ <= self._kept_from:
            return
        self._kept_from = round_
        for r in [r for r in self._secrets if r < round_]:
            del self._secrets[r]
        self._submitted = {k: v for k, v in self._submitted.items() if k[0] >= round_}
        self._said = {k for k in self._said if k[0] >= round_}
        self._no_fresh_shard = {k for k in self._no_fresh_shard if k[0] >= round_}

    def _may_be_eligible(self, state: Any, round_: int) -> bool:
        """Stake and jail as the state says now (the eligible set itself is fixed at s_r)."""
        acct = state.account(self.address)
        if acct is None or acct.stake < self.params.min_miner_stake:
            self._once(round_, "not staked enough to mine; waiting")
            return False
        if acct.jailed_until_round >= round_:
            self._once(round_, f"jailed until round {acct.jailed_until_round}; sitting this round out")
            return False
        return True

    def _secrets_for(self, round_: int, model_hash: bytes) -> RoundSecrets | None:
        sec = self._secrets.get(round_)
        if sec is None:
            try:
                sec = self.store.load(round_)
            except MinerStoreError as exc:
                self._once(round_, f"cannot use saved secrets: {exc}", logging.ERROR)
                return None
            if sec is not None:
                log.info("round %d secrets reloaded from %s", round_, self.store.path(round_))
                self._secrets[round_] = sec
                self._stat(round_).train_s = sec.train_s
        if sec is not None and sec.prev_model_hash != model_hash:
            return None
        return sec

    def _ensure_training(self, round_: int, model_hash: bytes) -> None:
        if self._secrets_for(round_, model_hash) is not None or (round_, model_hash) in self._no_fresh_shard:
            return
        if self._train_task is not None and not self._train_task.done():
            # Let a running job finish even if its round has passed: cancelling may kill a worker
            # that is still importing TensorFlow, and a warm worker finishes a digits job in ~1 s.
            return
        self._train_key = (round_, model_hash)
        self._train_task = asyncio.create_task(
            self._prepare(round_, model_hash), name=f"miner-train-{round_}"
        )

    async def _prepare(self, round_: int, model_hash: bytes) -> None:
        """Train (or build the behaviour's model), draw the test shard, persist the secrets."""
        try:
            g = self.node.pocl.global_weights(self.node.chain.state, model_hash)  # type: ignore[union-attr]
        except RuntimeError as exc:
            self._once(round_, f"cannot load G_{round_ - 1}: {exc}", logging.ERROR)
            return
        d = self.data
        self.last_step = f"training round {round_}"
        log.info("round %d training from G_%d=%s", round_, round_ - 1, model_hash.hex()[:12])
        trained = None
        train_s = 0.0
        t0 = time.monotonic()
        if self.behaviour.trains:
            x_train, y_train = self.behaviour.training_set(d.x_train, d.y_train, self.params.classes)
            try:
                res = await self.worker.train(
                    TrainJob(
                        self.spec,
                        g,
                        x_train,
                        y_train,
                        epochs=self.settings.epochs,
                        batch_size=self.settings.batch_size,
                        lr=self.settings.lr,
                        seed=sub_seed(self.settings.seed, "train", self.settings.shard, round_),
                    )
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # once per round and message: a worker that cannot start is retried on every poll
                self._once(round_, f"training failed: {exc}", logging.ERROR)
                self._train_task = None
                return
            trained = res.weights
            train_s = res.seconds
        try:
            sec = round_secrets(
                self.behaviour,
                self.params,
                round_,
                model_hash,
                g,
                trained,
                d,
                salt=secrets_mod.token_bytes(SALT_LEN),
                model_seed=sub_seed(self.settings.seed, "model", self.settings.shard, round_),
                train_s=train_s,
                shard_is_fresh=chain_shard_is_fresh(self.node.pocl, self.node.chain.state, round_),  # type: ignore[union-attr]
            )
        except NoFreshShard as exc:
            self._no_fresh_shard.add((round_, model_hash))
            self._once(round_, f"NOT COMMITTING: no fresh test shard: {exc}", logging.ERROR)
            self.last_step = f"no fresh test shard for round {round_}"
            return
        await asyncio.get_running_loop().run_in_executor(None, self.store.save, sec)
        self._secrets[round_] = sec
        st = self._stat(round_)
        st.train_s = train_s
        st.trained_at = time.time()
        log.info(
            "round %d model ready (train %.2fs, total %.2fs), secrets saved",
            round_,
            train_s,
            time.monotonic() - t0,
        )
        self.last_step = f"ready for round {round_}"
        self._wake.set()

    # ------------------------------------------------------------------ submissions

    def _pending(self, round_: int, kind: str) -> bool:
        """A tx of this kind for this round was sent and may still land: do not send another."""
        sent = self._submitted.get((round_, kind))
        if sent is None:
            return False
        tx_hash, height = sent
        assert self.node.mempool is not None and self.node.chain is not None
        if tx_hash in self.node.mempool:
            return True
        return self.node.chain.height < height + RESUBMIT_AFTER_BLOCKS

    def _submit(self, round_: int, kind: str, payload: Struct) -> bool:
        node = self.node
        assert node.mempool is not None and node.chain is not None
        if self._pending(round_, kind):
            return False
        nonce = node.mempool.pending_nonce(self.address)
        if nonce is None:
            self._once(round_, "has no account on chain; cannot submit", logging.ERROR)
            return False
        tx = Tx(
            TX_VERSION,
            node.genesis.chain_id,
            kind,
            self.key.pubkey,
            nonce,
            node.params.min_fee,
            payload.to_list(),
        )
        stx = sign_tx(self.key, tx)
        res = node.submit_tx(stx.raw)
        if res.error is not None:
            self._once(round_, f"{kind} rejected: {res.error.code}: {res.error}", logging.WARNING)
            return False
        self._submitted[(round_, kind)] = (res.tx_hash, node.chain.height)
        log.info(
            "round %d submitted %s tx=%s nonce=%d bytes=%d",
            round_,
            kind,
            res.tx_hash.hex()[:12],
            nonce,
            len(stx.raw),
        )
        return True

    def _commit(self, rec: RoundRecord, sec: RoundSecrets) -> None:
        if self._pending(rec.round, KIND_POCL_COMMIT):
            return
        state = self.node.chain.state  # type: ignore[union-attr]
        fresh = freshness_check(self.behaviour, chain_shard_is_fresh(self.node.pocl, state, rec.round))
        if fresh is not None and not fresh(sec.test_x):
            # drawn fresh when prepared, so only secrets from an unexpected past get here
            self._once(
                rec.round,
                "NOT COMMITTING: the chain has already seen its saved test shard (it would be refused "
                "in SHARD and penalised as withholding)",
                logging.ERROR,
            )
            return
        payload = commit_payload(self.node.genesis.chain_id, self.address, sec)
        if self._submit(rec.round, KIND_POCL_COMMIT, payload):
            self._stat(rec.round).commit_height = self.node.chain.height + 1  # type: ignore[union-attr]
            self.last_step = f"committed round {rec.round}"

    def _open_shard(self, rec: RoundRecord) -> None:
        sec = self._secrets_for(rec.round, rec.prev_model_hash)
        if sec is None:
            self._once(rec.round, "committed but its secrets are gone: cannot open its shard", logging.ERROR)
            return
        if self._submit(rec.round, KIND_POCL_SHARD, shard_payload(sec)):
            self._stat(rec.round).shard_height = self.node.chain.height + 1  # type: ignore[union-attr]
            self.last_step = f"opened its shard for round {rec.round}"

    def _predict(self, rec: RoundRecord, state: Any) -> None:
        if self.behaviour.withholds:
            self._once(rec.round, "withholding its reveal (adversarial behaviour)", logging.WARNING)
            return
        sec = self._secrets_for(rec.round, rec.prev_model_hash)
        if sec is None:
            self._once(rec.round, "committed but its secrets are gone: cannot reveal", logging.ERROR)
            return
        if self._pending(rec.round, KIND_POCL_PREDICT):
            return
        data = self.node.pocl.round_data(state, rec)
        payload = predict_payload(self.behaviour, self.spec, self.address, sec, data, self.data)
        if self._submit(rec.round, KIND_POCL_PREDICT, payload):
            self._stat(rec.round).predict_height = self.node.chain.height + 1  # type: ignore[union-attr]
            self.last_step = f"revealed round {rec.round}"

    def _vote(self, rec: RoundRecord, state: Any) -> None:
        sec = self._secrets_for(rec.round, rec.prev_model_hash)
        if sec is None:
            self._once(rec.round, "revealed but its secrets are gone: cannot vote", logging.ERROR)
            return
        if self._pending(rec.round, KIND_POCL_VOTE):
            return
        payload = vote_payload(self.behaviour, self.address, sec, self.node.pocl.round_data(state, rec))
        if self._submit(rec.round, KIND_POCL_VOTE, payload):
            self._stat(rec.round).vote_height = self.node.chain.height + 1  # type: ignore[union-attr]
            self.last_step = f"voted round {rec.round}"
