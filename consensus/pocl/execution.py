"""PoCL on chain: its tx kinds and the begin/end-block hooks for the ledger executor (DESIGN §5.2).

Besides the round kinds (`pocl.*`), PoCL registers the miner role kinds `miner.register` (needs bonded
stake >= min_miner_stake; refused for a registered miner) and `miner.unregister` (refused for an
unregistered one). The registrations live in `ledger.roles`; the eligible set of a round is taken
from the registered miners (plus the stake/jail rules of `schedule.select_eligible`) when it opens, so
a registration or unregistration takes effect at the next round open. A miner that unregisters while
in an open round's eligible list stays in that frozen list: it is treated as any eligible miner of the
round (a missed COMMIT counts for downtime; a commitment must be followed by its shard and reveal or it
is slashed as withholding). Staking alone does not make a miner.

    pocl = PoclExecution(pocl_params, chain_params)
    executor = build_executor(pocl)

State layout (raw namespace `NS_POCL`, keys from `consensus.pocl.records`):

    head                      -> PoclHead (round in progress or next, its start, current model round/hash)
    r||round                  -> RoundRecord (phase, heights, participant lists, outcome once final)
    c|s|p|v||round||address   -> CommitEntry / ShardEntry / PredictEntry / VoteEntry
    m||address                -> consecutive rounds the miner was eligible and did not commit (absent = 0)
    f||fingerprint            -> the latest round in which a shard digest or revealed weights hash was seen
    F||round                  -> the fingerprints recorded in that round (forgotten memory_rounds later)
The global model hash lives in the ledger's `global/model` entry; model bytes are content-addressed
blobs (`State.put_model` / `get_model`) that the store persists with the block.

Lifecycle: the first block lazily writes the genesis model (deterministic from `init_seed`) and the head.
`begin_block` at `s_r` opens round r with the eligible set read from the state as it is before any tx
of that block. Txs update the record and write their entry. `end_block` applies the schedule's step;
on FINALIZE it runs `finalize_round`, pays rewards (new issuance), slashes (burns) and jails, counts
missed COMMITs and jails miners absent `max_missed_rounds` rounds in a row (`schedule.downtime`), stores
G_r, remembers the round's revealed weights hashes (so a copied model is not new for `memory_rounds`
rounds, like a replayed shard), deletes the round's per-miner entries (the txs stay in the blocks; the
record keeps the outcome) and schedules round r+1 at `end + 1 + round_gap_blocks`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pocl.consensus.pocl import schedule
from pocl.consensus.pocl.events import Jailed, PhaseStarted, RewardPaid, RoundFinalized, RoundOpened, Slashed
from pocl.consensus.pocl.finalize import FinalizeResult, finalize_round
from pocl.consensus.pocl.params import PoclParams
from pocl.consensus.pocl.records import (
    HEAD_KEY,
    PHASE_DONE,
    CommitEntry,
    PoclHead,
    PredictEntry,
    RoundData,
    RoundRecord,
    ShardEntry,
    VoteEntry,
    commit_key,
    missed_key,
    predict_key,
    round_key,
    seen_key,
    seen_round_key,
    shard_key,
    vote_key,
)
from pocl.consensus.pocl.txs import (
    KIND_POCL_COMMIT,
    KIND_POCL_PREDICT,
    KIND_POCL_SHARD,
    KIND_POCL_VOTE,
    CommitPayload,
    PayloadError,
    PredictPayload,
    ShardPayload,
    VotePayload,
)
from pocl.consensus.pocl.validate import accept_commit, accept_predict, accept_shard, accept_vote
from pocl.ledger import codec, errors, roles
from pocl.ledger.core_txs import default_registry
from pocl.ledger.errors import TxError
from pocl.ledger.evidence import slash_stake
from pocl.ledger.executor import Executor, SignatureVerifier, no_preverification
from pocl.ledger.params import ChainParams
from pocl.ledger.state import MAX_AMOUNT, State
from pocl.ledger.tx import KIND_MINER_REGISTER, KIND_MINER_UNREGISTER, EmptyPayload
from pocl.ledger.tx_kinds import BlockContext, TxContext, TxKind, TxRegistry

NS_POCL = "pocl"


def _pocl_max_bytes(params: ChainParams) -> int:
    return params.max_pocl_tx_bytes


def build_executor(
    pocl: PoclExecution, verify_signatures: SignatureVerifier = no_preverification
) -> Executor:
    """The executor every node runs (and tests drive): the core kinds plus PoCL's kinds and hooks.
    `verify_signatures` only saves time (the node passes its parallel verifier)."""
    registry = default_registry()
    pocl.register(registry)
    return Executor(
        registry,
        begin_block_hooks=[pocl.begin_block],
        end_block_hooks=[pocl.end_block],
        verify_signatures=verify_signatures,
    )


class PoclExecution:
    """Binds PoCL params to the ledger executor's registry and hooks. Holds no chain state itself."""

    def __init__(self, params: PoclParams, chain_params: ChainParams | None = None) -> None:
        params.check_model()
        if chain_params is not None:
            params.check_chain_params(chain_params)
        self.params = params
        self._genesis_cache: tuple[bytes, bytes] | None = None

    # ------------------------------------------------------------------ wiring

    def tx_kinds(self) -> list[TxKind]:
        return [
            TxKind(KIND_POCL_COMMIT, CommitPayload, self.validate_commit, self.apply_commit, _pocl_max_bytes),
            TxKind(KIND_POCL_SHARD, ShardPayload, self.validate_shard, self.apply_shard, _pocl_max_bytes),
            TxKind(
                KIND_POCL_PREDICT, PredictPayload, self.validate_predict, self.apply_predict, _pocl_max_bytes
            ),
            TxKind(KIND_POCL_VOTE, VotePayload, self.validate_vote, self.apply_vote, _pocl_max_bytes),
            TxKind(KIND_MINER_REGISTER, EmptyPayload, self.validate_register, self.apply_register),
            TxKind(KIND_MINER_UNREGISTER, EmptyPayload, self.validate_unregister, self.apply_unregister),
        ]

    def register(self, registry: TxRegistry) -> None:
        for kind in self.tx_kinds():
            registry.register(kind)

    # ------------------------------------------------------------------ state access

    def genesis_model(self) -> tuple[bytes, bytes]:
        """(hash, canonical bytes) of G_0: deterministic from the model spec and init_seed."""
        if self._genesis_cache is None:
            from pocl.ml.model.weights import encode_weights, initial_weights, weights_hash

            w = initial_weights(self.params.model_spec(), self.params.init_seed)
            self._genesis_cache = (weights_hash(w), encode_weights(w))
        return self._genesis_cache

    @staticmethod
    def head(state: State) -> PoclHead | None:
        raw = state.get_raw(NS_POCL, HEAD_KEY)
        return PoclHead.decode(raw) if raw is not None else None

    @staticmethod
    def record(state: State, round_: int) -> RoundRecord | None:
        raw = state.get_raw(NS_POCL, round_key(round_))
        return RoundRecord.decode(raw) if raw is not None else None

    def open_record(self, state: State) -> RoundRecord | None:
        """The round currently accepting txs, if any."""
        head = self.head(state)
        if head is None or head.next_start != 0:
            return None
        rec = self.record(state, head.round)
        return rec if rec is not None and rec.phase != PHASE_DONE else None

    def record_for_tx(self, state: State, height: int) -> RoundRecord | None:
        """The round a tx at `height` goes to. In block execution that is `open_record` (begin_block has
        run); for a mempool check on the state before s_r it is the round about to open, built exactly
        as begin_block will build it, so commits are accepted from the first COMMIT block on."""
        rec = self.open_record(state)
        if rec is not None:
            return rec
        head = self.head(state)
        if head is None:
            head = PoclHead(1, max(self.params.first_round_height, height), 0, state.global_model_hash or b"")
            if not head.model_hash:
                head = dataclasses.replace(head, model_hash=self.genesis_model()[0])
        if head.next_start == 0 or height < head.next_start:
            return None
        return RoundRecord.open(head.round, height, self.eligible_miners(state, head.round), head.model_hash)

    @staticmethod
    def _commit_entry(state: State, round_: int, miner: bytes) -> CommitEntry | None:
        raw = state.get_raw(NS_POCL, commit_key(round_, miner))
        return CommitEntry.decode(raw) if raw is not None else None

    @staticmethod
    def _put(state: State, key: bytes, obj: Any) -> None:
        state.set_raw(NS_POCL, key, obj.encode())

    def global_weights(self, state: State, model_hash: bytes) -> list[Any]:
        from pocl.ml.model.weights import decode_weights

        raw = state.get_model(model_hash)
        if raw is None:
            g_hash, g_raw = self.genesis_model()
            if model_hash != g_hash:
                raise RuntimeError(f"global model {model_hash.hex()} is not available to this node")
            raw = g_raw
        return decode_weights(self.params.model_spec(), raw)

    def round_data(self, state: State, rec: RoundRecord) -> RoundData:
        def load(cls: type, key_fn: Any, miners: list[bytes]) -> list[Any]:
            out = []
            for m in miners:
                raw = state.get_raw(NS_POCL, key_fn(rec.round, m))
                if raw is not None:
                    out.append(cls.decode(raw))
            return out

        return RoundData.build(
            rec,
            load(CommitEntry, commit_key, rec.committers),
            load(ShardEntry, shard_key, rec.shard_owners),
            load(PredictEntry, predict_key, rec.predictors),
            load(VoteEntry, vote_key, rec.voters),
        )

    # ------------------------------------------------------------------ miner role

    def validate_register(self, state: State, ctx: TxContext, _p: EmptyPayload) -> TxError | None:
        if roles.is_miner(state, ctx.sender):
            return TxError(errors.MINER_REGISTERED, "this account is already a registered miner")
        stake = ctx.account.stake if ctx.account is not None else 0
        if stake < self.params.min_miner_stake:
            return TxError(
                errors.INSUFFICIENT_STAKE,
                f"bonded stake {stake} is below min_miner_stake {self.params.min_miner_stake}: stake first",
            )
        return None

    @staticmethod
    def apply_register(state: State, ctx: TxContext, _p: EmptyPayload) -> None:
        roles.register_miner(state, ctx.sender)

    @staticmethod
    def validate_unregister(state: State, ctx: TxContext, _p: EmptyPayload) -> TxError | None:
        if not roles.is_miner(state, ctx.sender):
            return TxError(errors.MINER_NOT_REGISTERED, "this account is not a registered miner")
        return None

    @staticmethod
    def apply_unregister(state: State, ctx: TxContext, _p: EmptyPayload) -> None:
        roles.unregister_miner(state, ctx.sender)

    # ------------------------------------------------------------------ txs

    def _reject(self, exc: PayloadError) -> TxError:
        return TxError(exc.code, exc.message)

    def validate_commit(self, state: State, ctx: TxContext, p: CommitPayload) -> TxError | None:
        try:
            accept_commit(
                self.record_for_tx(state, ctx.height), ctx.sender, p, self.params, ctx.height, ctx.stx.hash
            )
        except PayloadError as exc:
            return self._reject(exc)
        return None

    def apply_commit(self, state: State, ctx: TxContext, p: CommitPayload) -> None:
        # the record validate_commit accepted: in a mempool one block behind s_r, the round about to open
        rec, entry = accept_commit(
            self.record_for_tx(state, ctx.height), ctx.sender, p, self.params, ctx.height, ctx.stx.hash
        )
        self._put(state, commit_key(rec.round, ctx.sender), entry)
        self._put(state, round_key(rec.round), rec)

    def seen_recently(self, state: State, fingerprint: bytes, round_: int) -> bool:
        """Was this shard digest / weights hash seen in round `round_` or the `memory_rounds` before it?"""
        raw = state.get_raw(NS_POCL, seen_key(fingerprint))
        return raw is not None and codec.decode(raw) >= round_ - self.params.memory_rounds

    def _remember(self, state: State, round_: int, fingerprints: list[bytes]) -> None:
        """Record fingerprints as seen in `round_` (and in that round's list, to forget them later)."""
        key = seen_round_key(round_)
        raw = state.get_raw(NS_POCL, key)
        listed: list[bytes] = codec.decode(raw) if raw is not None else []
        for fp in fingerprints:
            state.set_raw(NS_POCL, seen_key(fp), codec.encode(round_))
            if fp not in listed:
                listed.append(fp)
        state.set_raw(NS_POCL, key, codec.encode(listed))

    def _forget(self, state: State, round_: int) -> None:
        """Drop the fingerprints recorded in `round_` unless seen again since."""
        key = seen_round_key(round_)
        raw = state.get_raw(NS_POCL, key)
        if raw is None:
            return
        for fp in codec.decode(raw):
            last = state.get_raw(NS_POCL, seen_key(fp))
            if last is not None and codec.decode(last) == round_:
                state.delete_raw(NS_POCL, seen_key(fp))
        state.delete_raw(NS_POCL, key)

    def _shard(self, state: State, ctx: TxContext, p: ShardPayload) -> tuple[RoundRecord, ShardEntry]:
        rec = self.open_record(state)
        commit = self._commit_entry(state, rec.round, ctx.sender) if rec is not None else None
        round_ = rec.round if rec is not None else 0
        return accept_shard(
            rec,
            ctx.sender,
            p,
            commit,
            self.params,
            ctx.block.chain_id,
            ctx.height,
            ctx.stx.hash,
            lambda digest: self.seen_recently(state, digest, round_),
        )

    def validate_shard(self, state: State, ctx: TxContext, p: ShardPayload) -> TxError | None:
        try:
            self._shard(state, ctx, p)
        except PayloadError as exc:
            return self._reject(exc)
        return None

    def apply_shard(self, state: State, ctx: TxContext, p: ShardPayload) -> None:
        rec, entry = self._shard(state, ctx, p)
        self._put(state, shard_key(rec.round, ctx.sender), entry)
        self._put(state, round_key(rec.round), rec)
        self._remember(state, rec.round, [entry.digest])

    def _predict(self, state: State, ctx: TxContext, p: PredictPayload) -> tuple[RoundRecord, PredictEntry]:
        rec = self.open_record(state)
        commit = self._commit_entry(state, rec.round, ctx.sender) if rec is not None else None
        return accept_predict(
            rec, ctx.sender, p, commit, self.params, ctx.block.chain_id, ctx.height, ctx.stx.hash
        )

    def validate_predict(self, state: State, ctx: TxContext, p: PredictPayload) -> TxError | None:
        try:
            self._predict(state, ctx, p)
        except PayloadError as exc:
            return self._reject(exc)
        return None

    def apply_predict(self, state: State, ctx: TxContext, p: PredictPayload) -> None:
        rec, entry = self._predict(state, ctx, p)
        self._put(state, predict_key(rec.round, ctx.sender), entry)
        self._put(state, round_key(rec.round), rec)

    def _vote(self, state: State, ctx: TxContext, p: VotePayload) -> tuple[RoundRecord, VoteEntry]:
        rec = self.open_record(state)
        commit = self._commit_entry(state, rec.round, ctx.sender) if rec is not None else None
        return accept_vote(
            rec, ctx.sender, p, commit, self.params, ctx.block.chain_id, ctx.height, ctx.stx.hash
        )

    def validate_vote(self, state: State, ctx: TxContext, p: VotePayload) -> TxError | None:
        try:
            self._vote(state, ctx, p)
        except PayloadError as exc:
            return self._reject(exc)
        return None

    def apply_vote(self, state: State, ctx: TxContext, p: VotePayload) -> None:
        rec, entry = self._vote(state, ctx, p)
        self._put(state, vote_key(rec.round, ctx.sender), entry)
        self._put(state, round_key(rec.round), rec)

    # ------------------------------------------------------------------ hooks

    def _ensure_head(self, state: State, height: int) -> PoclHead:
        head = self.head(state)
        if head is None:
            g_hash, g_raw = self.genesis_model()
            if state.global_model_hash is None:
                state.put_model(g_hash, g_raw)
                state.set_global_model_hash(g_hash)
            head = PoclHead(
                1, max(self.params.first_round_height, height), 0, state.global_model_hash or g_hash
            )
            self._put(state, HEAD_KEY, head)
        return head

    def eligible_miners(self, state: State, round_: int) -> list[bytes]:
        """Round `round_`'s eligible set: registered miners with enough bonded stake, not jailed."""
        accounts = []
        for addr in roles.miners(state):
            acct = state.account(addr)
            if acct is not None:
                accounts.append((addr, acct.stake, acct.jailed_until_round))
        return schedule.select_eligible(accounts, round_, self.params)

    def begin_block(self, state: State, ctx: BlockContext) -> None:
        head = self._ensure_head(state, ctx.height)
        if head.next_start == 0 or ctx.height < head.next_start:
            return
        eligible = self.eligible_miners(state, head.round)
        rec = RoundRecord.open(head.round, ctx.height, eligible, head.model_hash)
        self._put(state, round_key(rec.round), rec)
        self._put(state, HEAD_KEY, dataclasses.replace(head, next_start=0))
        ctx.events.append(RoundOpened(rec.round, ctx.height, tuple(eligible)))

    def end_block(self, state: State, ctx: BlockContext) -> None:
        rec = self.open_record(state)
        if rec is None:
            return
        step = schedule.end_block_step(rec, ctx.height, self.params)
        if step is schedule.Step.ADVANCE:
            rec = schedule.advance(rec, ctx.height)
            self._put(state, round_key(rec.round), rec)
            ctx.events.append(PhaseStarted(rec.round, rec.phase_name, start_height=ctx.height + 1))
        elif step is schedule.Step.FINALIZE:
            self.finalize(state, ctx, rec)

    def finalize(self, state: State, ctx: BlockContext, rec: RoundRecord) -> FinalizeResult:
        from pocl.ml.model.weights import encode_weights

        data = self.round_data(state, rec)
        g = self.global_weights(state, rec.prev_model_hash)
        # The outcome depends on the round's txs and the models on chain only: nothing of the finalizing
        # block (time, proposer, tx order) enters; the seed comes from the miners' revealed salts.
        result = finalize_round(
            data,
            g,
            self.params,
            ctx.chain_id,
            lambda h: state.get_model(h) is not None or self.seen_recently(state, h, rec.round),
        )
        out = result.outcome
        for pay in out.payouts:
            acct = state.account_for_update(pay.miner)
            acct.balance = min(MAX_AMOUNT, acct.balance + pay.amount)
            ctx.events.append(RewardPaid(rec.round, pay.miner, pay.role, pay.amount))
        for pen in out.penalties:
            slashed = self._slash(state, pen.miner, pen.slash_bps, rec.round + pen.jail_rounds)
            ctx.events.append(
                Slashed(
                    rec.round, pen.miner, pen.kind, slashed, jailed_until_round=rec.round + pen.jail_rounds
                )
            )
        self._downtime(state, ctx, rec)
        head = self.head(state)
        assert head is not None
        if result.changed:
            state.put_model(out.model_hash, encode_weights(result.weights))
            state.set_global_model_hash(out.model_hash)
            head = dataclasses.replace(head, model_round=rec.round, model_hash=out.model_hash)
        self._remember(state, rec.round, sorted({e.weights_hash for e in data.predictions.values()}))
        if rec.round > self.params.memory_rounds:
            self._forget(state, rec.round - self.params.memory_rounds)
        self._forget_entries(state, rec)
        done = schedule.mark_finalized(rec, ctx.height, out)
        self._put(state, round_key(rec.round), done)
        nxt = schedule.next_round_start(done, self.params)
        self._put(state, HEAD_KEY, dataclasses.replace(head, round=rec.round + 1, next_start=nxt))
        ctx.events.append(RoundFinalized(rec.round, out.void, tuple(out.winners), out.model_hash, nxt))
        return result

    @staticmethod
    def _forget_entries(state: State, rec: RoundRecord) -> None:
        """Delete a final round's per-miner entries: nothing reads them once the outcome is recorded (the
        txs stay in the blocks, what is not new stays in the fingerprint index), and keeping them grew
        state, which every node holds in memory, by the round's shards, labels and weights each round."""
        for key_fn, miners in (
            (commit_key, rec.committers),
            (shard_key, rec.shard_owners),
            (predict_key, rec.predictors),
            (vote_key, rec.voters),
        ):
            for m in miners:
                state.delete_raw(NS_POCL, key_fn(rec.round, m))

    def _downtime(self, state: State, ctx: BlockContext, rec: RoundRecord) -> None:
        """Count the round's missed COMMITs and jail miners absent `max_missed_rounds` rounds in a row."""
        missed = {}
        for m in rec.eligible:
            raw = state.get_raw(NS_POCL, missed_key(m))
            if raw is not None:
                missed[m] = codec.decode(raw)
        counts, jailed = schedule.downtime(rec.eligible, rec.committers, missed, self.params)
        for m, n in counts.items():  # address order
            if n:
                state.set_raw(NS_POCL, missed_key(m), codec.encode(n))
            elif m in missed:
                state.delete_raw(NS_POCL, missed_key(m))
        until = rec.round + self.params.jail_rounds
        for m in jailed:
            acct = state.account_for_update(m)
            acct.jailed_until_round = max(acct.jailed_until_round, until)
            ctx.events.append(Jailed(rec.round, m, self.params.max_missed_rounds, acct.jailed_until_round))

    @staticmethod
    def _slash(state: State, miner: bytes, bps: int, jail_until_round: int) -> int:
        """Burn `bps` of bonded and unbonding stake, jail through `jail_until_round`; returns the amount."""
        slashed = slash_stake(state, miner, bps)
        acct = state.account_for_update(miner)
        acct.jailed_until_round = max(acct.jailed_until_round, jail_until_round)
        return slashed

    # ------------------------------------------------------------------ summaries

    def round_info(self, state: State) -> bytes:
        """Canonical summary for the block header's `round_info`: [round, phase, model_round, model_hash]."""
        head = self.head(state)
        if head is None:
            return b""
        rec = self.open_record(state)
        phase = rec.phase if rec is not None else PHASE_DONE
        return codec.encode([head.round, phase, head.model_round, head.model_hash])
