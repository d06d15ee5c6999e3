"""PoCL round parameters: the genesis `pocl` section (DESIGN §5.2).

Everything that enters state is an integer: fractions are basis points (`BPS` = 1.0), so every node
derives identical results (verdicts compare exact integer-inference labels, `consensus.pocl.verify`).
The model architecture id, input shape and class count are checked against `ml.model.registry` so a
genesis naming a model this build does not know fails at load time, not in the middle of a round.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Any

from pocl.ledger.params import BPS, ChainParams

# Hard caps keeping one round's work and one tx bounded whatever a genesis says.
MAX_MINERS_CAP = 256
MAX_SHARD_SIZE = 10_000
MAX_PHASE_BLOCKS = 1_000_000
# Size bounds for PoCL txs (window capacity): a tx envelope (version, chain id, kind, pubkey, nonce, fee,
# signature and msgpack framing) is far below 1 KiB; an NdArray's dtype/shape framing below 64 bytes.
TX_ENVELOPE_BYTES = 1024
ARRAY_OVERHEAD = 64


class PoclParamsError(ValueError):
    """Invalid PoCL parameters; `field` names the offending key."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"pocl.{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class PoclParams:
    # model
    model: str = "cnn-digits"
    input_shape: tuple[int, ...] = (8, 8, 1)
    classes: int = 10
    init_seed: int = 0
    aggregation: str = "clip:2.0"  # ml.model.aggregate: clip at 2x the lower median of the round's new updates' norms
    # schedule (heights)
    first_round_height: int = 1  # s_1
    round_gap_blocks: int = 0  # blocks between a round's finalizing block and the next s_r
    train_blocks: int = 11  # maximum COMMIT length (a round of at most 20 blocks fits the default unbonding)
    shard_blocks: int = 2  # maximum SHARD length (shard inputs are opened after every model is committed)
    predict_blocks: int = 4
    vote_blocks: int = 3
    # participation
    test_shard_size: int = 20
    min_miner_stake: int = 10_000  # with round_reward, sized so prediction fraud does not pay (see below)
    max_miners: int = 64  # eligible set = top stakes (ties by address) among qualifying accounts
    winners: int = 2  # K
    # economics
    round_reward: int = 400
    voter_share_bps: int = 2_000
    slash_withhold_bps: int = 100
    slash_mismatch_bps: int = 1_000
    slash_prediction_fraud_bps: int = BPS  # provable prediction fraud forfeits the whole stake
    slash_vote_fraud_bps: int = 3_000
    jail_rounds: int = 3
    # liveness: an eligible miner that misses this many rounds' COMMIT in a row is jailed for jail_rounds
    max_missed_rounds: int = 3
    # a shard, or revealed weights, seen in the last memory_rounds rounds is not new: such a shard is
    # rejected, such weights cannot win and earn nothing (replayed shards, copied models)
    memory_rounds: int = 32

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ derived

    @property
    def winners_pool(self) -> int:
        return self.round_reward * (BPS - self.voter_share_bps) // BPS

    @property
    def voters_pool(self) -> int:
        return self.round_reward - self.winners_pool

    def model_spec(self) -> Any:
        from pocl.ml.model.registry import get_model

        return get_model(self.model)

    # ------------------------------------------------------------------ validation

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("model", "aggregation"):
                if not isinstance(value, str) or not value or len(value) > 64:
                    raise PoclParamsError(f.name, "must be a non-empty string of at most 64 characters")
                continue
            if f.name == "input_shape":
                if (
                    not isinstance(value, tuple)
                    or not 1 <= len(value) <= 4
                    or any(isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 4096 for d in value)
                ):
                    raise PoclParamsError(f.name, "must be a list of 1..4 positive integers")
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise PoclParamsError(f.name, "must be an integer")
            if value < 0:
                raise PoclParamsError(f.name, "must not be negative")
            if value >= 2**63:
                raise PoclParamsError(f.name, "must be below 2**63")
        for name in ("train_blocks", "shard_blocks", "predict_blocks", "vote_blocks"):
            if not 1 <= getattr(self, name) <= MAX_PHASE_BLOCKS:
                raise PoclParamsError(name, f"must be between 1 and {MAX_PHASE_BLOCKS}")
        if self.first_round_height < 1:
            raise PoclParamsError("first_round_height", "must be at least 1")
        if not 2 <= self.classes <= 65_535:
            raise PoclParamsError("classes", "must be between 2 and 65535")
        if not 1 <= self.test_shard_size <= MAX_SHARD_SIZE:
            raise PoclParamsError("test_shard_size", f"must be between 1 and {MAX_SHARD_SIZE}")
        if not 2 <= self.max_miners <= MAX_MINERS_CAP:
            raise PoclParamsError("max_miners", f"must be between 2 and {MAX_MINERS_CAP}")
        if not 1 <= self.winners <= self.max_miners:
            raise PoclParamsError("winners", "must be between 1 and max_miners")
        if self.min_miner_stake < 1:
            raise PoclParamsError("min_miner_stake", "must be at least 1")
        for name in (
            "voter_share_bps",
            "slash_withhold_bps",
            "slash_mismatch_bps",
            "slash_prediction_fraud_bps",
            "slash_vote_fraud_bps",
        ):
            if getattr(self, name) > BPS:
                raise PoclParamsError(name, f"must be at most {BPS} basis points")
        if self.init_seed >= 2**32:
            raise PoclParamsError("init_seed", "must be below 2**32")
        if not 1 <= self.memory_rounds <= 100_000:
            raise PoclParamsError("memory_rounds", "must be between 1 and 100000")
        if self.max_missed_rounds < 1:
            raise PoclParamsError("max_missed_rounds", "must be at least 1 (absent miners must be jailed)")
        self.check_economics()

    # ------------------------------------------------------------------ economics (protocol doc §12)

    def fraud_catch_probability(self) -> Fraction:
        """Lower bound on the probability that a candidate which faked at least one of its scoring shards is
        caught when it would win: 1. A candidate that would win is always verified, on EVERY shard that
        scored it (consensus.pocl.verify), with exact canonical inference, so one faked label is enough."""
        return Fraction(1)

    def prediction_fraud_ev(self) -> Fraction:
        """Upper bound on a prediction faker's expected gain per attempt (exact rational, never a float):

            EV = (1 - p) * G - p * S
            G = round_reward                                   (the most one winner is paid in a round)
            S = min_miner_stake * slash_prediction_fraud_bps / BPS   (the least stake a faker can lose)
            p = fraud_catch_probability()

        Deterrence requires EV < 0, i.e. p * S > (1 - p) * G."""
        p = self.fraud_catch_probability()
        stake_lost = Fraction(self.min_miner_stake * self.slash_prediction_fraud_bps, BPS)
        return (1 - p) * self.round_reward - p * stake_lost

    def check_economics(self) -> None:
        """Refuse parameters under which cheating can pay (the inequality of docs/pocl-protocol.md §12)."""
        if self.slash_prediction_fraud_bps != BPS:
            raise PoclParamsError(
                "slash_prediction_fraud_bps",
                f"must be {BPS}: provable prediction fraud forfeits the whole stake",
            )
        for name in ("slash_vote_fraud_bps", "slash_mismatch_bps", "slash_withhold_bps"):
            if self.min_miner_stake * getattr(self, name) < BPS:
                raise PoclParamsError(
                    name,
                    "must slash at least one unit of min_miner_stake (a proven offence must cost something)",
                )
        ev = self.prediction_fraud_ev()
        if ev >= 0:
            p = self.fraud_catch_probability()
            raise PoclParamsError(
                "min_miner_stake",
                "prediction fraud would pay: deterrence needs p*S > (1-p)*G (docs/pocl-protocol.md §12) "
                f"with p = {p} (exhaustive verification), S = min_miner_stake = {self.min_miner_stake}, "
                f"G = round_reward = {self.round_reward}; the expected gain is "
                f"{ev.numerator // ev.denominator} per attempt. "
                "Raise min_miner_stake",
            )

    def check_model(self) -> None:
        """The architecture exists in this build and agrees with input_shape/classes."""
        try:
            spec = self.model_spec()
        except KeyError as exc:
            raise PoclParamsError("model", str(exc)) from None
        if tuple(spec.input_shape) != self.input_shape:
            raise PoclParamsError("input_shape", f"model {self.model} takes {list(spec.input_shape)}")
        if spec.num_classes != self.classes:
            raise PoclParamsError("classes", f"model {self.model} has {spec.num_classes} classes")
        self.aggregation_rule()

    def aggregation_rule(self) -> Any:
        from pocl.ml.model.aggregate import AggregationError, parse_rule

        try:
            return parse_rule(self.aggregation)
        except AggregationError as exc:
            raise PoclParamsError("aggregation", str(exc)) from None

    def max_round_blocks(self) -> int:
        return self.train_blocks + self.shard_blocks + self.predict_blocks + self.vote_blocks

    def max_commit_tx_bytes(self) -> int:
        """Upper bound on a pocl.commit tx: three commitments + envelope."""
        return 3 * 32 + 16 + TX_ENVELOPE_BYTES

    def max_shard_tx_bytes(self) -> int:
        """Upper bound on a pocl.shard tx: the float32 test shard + envelope."""
        samples = self.test_shard_size
        for d in self.input_shape:
            samples *= d
        return samples * 4 + ARRAY_OVERHEAD + TX_ENVELOPE_BYTES

    def max_predict_tx_bytes(self) -> int:
        """Upper bound on a pocl.predict tx: weights + one label array per other miner + envelope."""
        from pocl.ml.model.weights import encoded_size_limit

        return (
            encoded_size_limit(self.model_spec())
            + (self.max_miners - 1) * self._label_array_bytes()
            + (TX_ENVELOPE_BYTES)
        )

    def max_vote_tx_bytes(self) -> int:
        """Upper bound on a pocl.vote tx: own labels + salt + one score per other miner + envelope."""
        return self._label_array_bytes() + 32 + (self.max_miners - 1) * 9 + TX_ENVELOPE_BYTES

    def _label_array_bytes(self) -> int:
        return self.test_shard_size * 8 + ARRAY_OVERHEAD

    def phase_tx_bounds(self) -> list[tuple[str, int, int]]:
        """(window field, its length in blocks, largest tx) for each phase every eligible miner acts in."""
        return [
            ("train_blocks", self.train_blocks, self.max_commit_tx_bytes()),
            ("shard_blocks", self.shard_blocks, self.max_shard_tx_bytes()),
            ("predict_blocks", self.predict_blocks, self.max_predict_tx_bytes()),
            ("vote_blocks", self.vote_blocks, self.max_vote_tx_bytes()),
        ]

    @staticmethod
    def window_capacity(chain: ChainParams, blocks: int, tx_bytes: int) -> int:
        """How many txs of up to `tx_bytes` a window of `blocks` blocks is guaranteed to carry."""
        return blocks * min(chain.max_block_txs, chain.max_block_bytes // tx_bytes)

    def check_chain_params(self, chain: ChainParams) -> None:
        """Cross-checks with the ledger params that PoCL safety depends on.

        - a miner that unstakes during a round must still be slashable when the round finalizes, so
          unbonding must outlast the longest round;
        - a predict tx for this model, and a shard tx, must fit in one tx (`max_pocl_tx_bytes`) and one block;
        - every phase window must carry one tx from each of `max_miners` eligible miners (block byte and
          tx-count limits), so no miner is jailed or slashed for a tx the chain had no room for.
        """
        if chain.unbonding_blocks < self.max_round_blocks():
            raise PoclParamsError(
                "train_blocks",
                f"a round can last {self.max_round_blocks()} blocks but unbonding_blocks is "
                f"{chain.unbonding_blocks}: a cheater could unbond before it is slashed",
            )
        for field, what, need in (
            ("model", "predict", self.max_predict_tx_bytes()),
            ("test_shard_size", "shard", self.max_shard_tx_bytes()),
        ):
            if chain.max_pocl_tx_bytes < need:
                raise PoclParamsError(
                    field,
                    f"a {self.model} {what} tx needs up to {need} bytes; raise params.max_pocl_tx_bytes "
                    f"(now {chain.max_pocl_tx_bytes})",
                )
            if chain.max_block_bytes < need:
                raise PoclParamsError(field, f"a {self.model} {what} tx ({need} bytes) does not fit in max_block_bytes")
        for field, blocks, tx_bytes in self.phase_tx_bounds():
            capacity = self.window_capacity(chain, blocks, tx_bytes)
            if capacity < self.max_miners:
                raise PoclParamsError(
                    field,
                    f"the window carries at most {capacity} txs of up to {tx_bytes} bytes ({blocks} blocks x "
                    f"min(max_block_txs {chain.max_block_txs}, max_block_bytes {chain.max_block_bytes} // "
                    f"{tx_bytes})) but max_miners = {self.max_miners} eligible miners must each fit one: "
                    f"lengthen {field}, raise params.max_block_bytes or lower max_miners",
                )

    # ------------------------------------------------------------------ JSON

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["input_shape"] = list(self.input_shape)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any] | None, check_model: bool = True) -> PoclParams:
        """Build from the genesis `pocl` object; missing keys take defaults, unknown keys are errors."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise PoclParamsError("", "must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise PoclParamsError(str(key), "unknown parameter")
            if key == "input_shape":
                if not isinstance(value, list):
                    raise PoclParamsError(key, "must be a list of positive integers")
                value = tuple(value)
            kwargs[key] = value
        params = cls(**kwargs)
        if check_model:
            params.check_model()
        return params
