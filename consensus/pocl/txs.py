"""PoCL transaction payloads, commitments and stateless checks (DESIGN §4, §5.2).

Four kinds carry a round, one per phase:

    pocl.commit  = [round, model_commit, label_commit, shard_commit, n_train]     commitments only
    pocl.shard   = [round, test_x]                    opens shard_commit once COMMIT has closed
    pocl.predict = [round, weights, predictions]      predictions: one label array per OTHER shard owner
    pocl.vote    = [round, labels, salt, scores]      scores: bps, one per OTHER valid predictor

Arrays use `ledger.arrays`' plain form `[dtype, shape, raw bytes]` (the `NdArray` struct encodes to
exactly that). Test inputs are float32 of shape `(test_shard_size, *input_shape)`; label arrays are
int64 of shape `(test_shard_size,)` with values in `[0, classes)` (what `ml.model.inference.predict` returns).

Commitments, all domain-tagged:

    model_commit = H_commit(chain_id, round, sender_address, weights_hash)
    label_commit = H_label(chain_id, round, sender_address, labels_array, salt)
    shard_commit = H_shard(chain_id, round, sender_address, shard_digest(test_x))

Nothing of a shard is public while models can still be committed: a late committer cannot label the
other miners' shards and train on them (the k-NN attack laundered through training). `shard_digest` does
not depend on the order of the shard's rows, so a shard replayed with its rows permuted is still the same
shard for the chain's duplicate check (`consensus.pocl.validate.accept_shard`).

`weights_hash` is `ml.model.weights.weights_hash`, i.e. the tagged hash of the canonical weight bytes; since
those bytes are canonical (the decoder rejects anything else) we hash the revealed bytes directly.
Binding both commitments to chain, round and sender stops a miner from replaying another miner's (or its
own older) commitment: a copied model commitment never lets the copier reveal matching weights, and a
copied or replayed label commitment never opens under the copier's address or in another round (label
mismatch), so nobody is paid as a voter for a shard and labels it did not make.

The salt is 32 random bytes chosen by the miner; once revealed in VOTE the salts of all opened label
commitments are also the round's seed material (`consensus.pocl.finalize.round_seed`).

`check_*_payload` are the stateless checks (shapes, sizes, dtypes against the params); they raise
`PayloadError` with a stable `code`. Stateful rules (phase, eligibility, one per miner) are in
`consensus.pocl.validate`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np
from pocl.consensus.pocl.params import PoclParams
from pocl.ledger import codec
from pocl.ledger.arrays import ALLOWED_DTYPES, array_from_plain, array_to_plain
from pocl.ledger.codec import CodecError, Struct
from pocl.ledger.hashing import HASH_LEN, TAG_WEIGHTS, tagged_hash
from pocl.ledger.keys import ADDRESS_LEN
from pocl.ledger.params import BPS

TAG_MODEL_COMMIT = b"pocl/model-commit"
TAG_LABEL_COMMIT = b"pocl/label-commit"
TAG_SHARD_COMMIT = b"pocl/shard-commit"
TAG_SHARD_DIGEST = b"pocl/shard-digest"
TAG_SHARD_ROW = b"pocl/shard-row"

KIND_POCL_COMMIT = "pocl.commit"
KIND_POCL_SHARD = "pocl.shard"
KIND_POCL_PREDICT = "pocl.predict"
KIND_POCL_VOTE = "pocl.vote"

SALT_LEN = 32
TEST_X_DTYPE = "f4"
LABEL_DTYPE = "i8"
MAX_N_TRAIN = 2**40

# ---- stable error codes (stateless)
E_BAD_ROUND = "pocl_bad_round"
E_BAD_SHAPE = "pocl_bad_shape"
E_BAD_DTYPE = "pocl_bad_dtype"
E_BAD_LABEL = "pocl_bad_label"
E_BAD_WEIGHTS = "pocl_bad_weights"
E_BAD_SCORE = "pocl_bad_score"
E_TOO_LARGE = "pocl_too_large"
E_MALFORMED = "pocl_malformed"
E_BAD_INPUT = "pocl_bad_input"

# Test inputs are bounded so that no shard can push an honest model's logits to inf/NaN (whose argmax
# may differ between machines). Image inputs are in [0, 1] or [0, 255]; this leaves ample room.
MAX_INPUT_ABS = 1e4


class PayloadError(ValueError):
    """A PoCL payload that breaks a rule; `code` is stable, the message is for humans."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True)
class NdArray(Struct):
    """`ledger.arrays` plain form as a Struct: `[dtype, shape, raw bytes]`."""

    dtype: str
    shape: list[int]
    data: bytes

    MAX_LEN: ClassVar[dict[str, int]] = {"dtype": 4, "shape": 8}

    @classmethod
    def of(cls, arr: np.ndarray) -> NdArray:
        name, shape, data = array_to_plain(arr)
        return cls(name, shape, data)

    def to_numpy(self, max_bytes: int) -> np.ndarray:
        """Checked conversion (dtype allow-list, size bound before allocation, finite floats)."""
        return array_from_plain(self.to_list(), max_bytes=max_bytes)


@dataclasses.dataclass(frozen=True)
class CommitPayload(Struct):
    round: int
    model_commit: bytes
    label_commit: bytes
    shard_commit: bytes
    n_train: int  # informational only: never used for weighting

    BYTES_LEN: ClassVar[dict[str, int]] = {
        "model_commit": HASH_LEN,
        "label_commit": HASH_LEN,
        "shard_commit": HASH_LEN,
    }


@dataclasses.dataclass(frozen=True)
class ShardPayload(Struct):
    round: int
    test_x: NdArray  # the committed shard's inputs, float32 (test_shard_size, *input_shape)


@dataclasses.dataclass(frozen=True)
class PredictPayload(Struct):
    round: int
    weights: bytes  # ml.model.weights.encode_weights(...)
    predictions: list[NdArray]  # for each other shard owner, canonical (address) order

    MAX_LEN: ClassVar[dict[str, int]] = {"predictions": 256}


@dataclasses.dataclass(frozen=True)
class VotePayload(Struct):
    round: int
    labels: NdArray
    salt: bytes
    scores: list[int]  # accuracy (bps) of each other valid predictor on my shard, canonical order

    BYTES_LEN: ClassVar[dict[str, int]] = {"salt": SALT_LEN}
    MAX_LEN: ClassVar[dict[str, int]] = {"scores": 256}





# --------------------------------------------------------------------------- commitments


def weights_digest(weights: bytes) -> bytes:
    """H(weights): equal to `ml.model.weights.weights_hash(decode_weights(spec, weights))` for canonical bytes."""
    return tagged_hash(TAG_WEIGHTS, weights)


def model_commitment(chain_id: str, round_: int, sender: bytes, weights_hash: bytes) -> bytes:
    if len(sender) != ADDRESS_LEN or len(weights_hash) != HASH_LEN:
        raise ValueError("sender must be an address and weights_hash a 32-byte hash")
    return tagged_hash(TAG_MODEL_COMMIT, codec.encode([chain_id, round_, sender, weights_hash]))


def label_commitment(chain_id: str, round_: int, sender: bytes, labels: NdArray, salt: bytes) -> bytes:
    if len(salt) != SALT_LEN:
        raise ValueError(f"salt must be {SALT_LEN} bytes")
    if len(sender) != ADDRESS_LEN:
        raise ValueError("sender must be an address")
    return tagged_hash(TAG_LABEL_COMMIT, codec.encode([chain_id, round_, sender, labels.to_list(), salt]))


def shard_digest(test_x: np.ndarray) -> bytes:
    """H over the sorted hashes of the shard's rows (shape bound): one digest per SET of rows, so
    reordering a shard's samples does not make a new shard. Rows are hashed as little-endian float32 with
    -0.0 folded into 0.0, so flipping the sign of a zero does not either."""
    x = np.ascontiguousarray(np.asarray(test_x, dtype="<f4") + np.float32(0.0))
    flat = x.reshape(x.shape[0], -1) if x.ndim else x.reshape(1, 1)
    rows = sorted(tagged_hash(TAG_SHARD_ROW, row.tobytes()) for row in flat)
    return tagged_hash(TAG_SHARD_DIGEST, codec.encode([list(x.shape), rows]))


def shard_commitment(chain_id: str, round_: int, sender: bytes, digest: bytes) -> bytes:
    if len(sender) != ADDRESS_LEN or len(digest) != HASH_LEN:
        raise ValueError("sender must be an address and digest a 32-byte hash")
    return tagged_hash(TAG_SHARD_COMMIT, codec.encode([chain_id, round_, sender, digest]))


def labels_array(labels: Any) -> NdArray:
    """Canonical wire form of a label vector (int64)."""
    return NdArray.of(np.ascontiguousarray(np.asarray(labels, dtype=np.int64)))


# --------------------------------------------------------------------------- stateless checks


def _check_round(round_: int) -> None:
    if round_ < 1:
        raise PayloadError(E_BAD_ROUND, "round numbers start at 1")


def check_array(arr: NdArray, dtype: str, shape: tuple[int, ...], what: str) -> np.ndarray:
    """Dtype and exact shape first (cheap, on the declared header), then the checked conversion."""
    if arr.dtype != dtype:
        raise PayloadError(E_BAD_DTYPE, f"{what}: dtype must be {dtype!r}, got {arr.dtype!r}")
    if tuple(arr.shape) != shape:
        raise PayloadError(E_BAD_SHAPE, f"{what}: shape must be {list(shape)}, got {arr.shape}")
    try:
        return arr.to_numpy(max_bytes=math.prod(shape) * ALLOWED_DTYPES[dtype].itemsize)
    except CodecError as exc:
        raise PayloadError(E_BAD_SHAPE, f"{what}: {exc}") from None


def check_labels(arr: NdArray, params: PoclParams, what: str) -> np.ndarray:
    labels = check_array(arr, LABEL_DTYPE, (params.test_shard_size,), what)
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= params.classes):
        raise PayloadError(E_BAD_LABEL, f"{what}: labels must be in [0, {params.classes})")
    return labels


def check_commit_payload(p: CommitPayload, params: PoclParams) -> None:
    _check_round(p.round)
    if not 0 <= p.n_train <= MAX_N_TRAIN:
        raise PayloadError(E_MALFORMED, f"n_train must be between 0 and {MAX_N_TRAIN}")


def check_shard_payload(p: ShardPayload, params: PoclParams) -> np.ndarray:
    """Returns the test inputs as a numpy array."""
    _check_round(p.round)
    return check_test_x(p.test_x, params)


def check_test_x(test_x: NdArray, params: PoclParams) -> np.ndarray:
    x = check_array(test_x, TEST_X_DTYPE, (params.test_shard_size, *params.input_shape), "test_x")
    if x.size and float(np.max(np.abs(x))) > MAX_INPUT_ABS:
        raise PayloadError(
            E_BAD_INPUT, f"test_x values must be within [-{MAX_INPUT_ABS:g}, {MAX_INPUT_ABS:g}]"
        )
    return x


def weights_size_limit(params: PoclParams) -> int:
    from pocl.ml.model.weights import encoded_size_limit

    return encoded_size_limit(params.model_spec())


def check_predict_payload(p: PredictPayload, params: PoclParams) -> list[np.ndarray]:
    """Shape-checks the weights (decoded against the model spec) and every prediction vector.

    The number of predictions depends on the committer set, so it is checked statefully; here every
    vector must just be a well-formed label array. Returns the decoded weights.
    """
    from pocl.ml.model.weights import decode_weights

    _check_round(p.round)
    limit = weights_size_limit(params)
    if len(p.weights) > limit:
        raise PayloadError(E_TOO_LARGE, f"weights of {len(p.weights)} bytes exceed {limit}")
    try:
        weights = decode_weights(params.model_spec(), p.weights)
    except CodecError as exc:
        raise PayloadError(E_BAD_WEIGHTS, str(exc)) from None
    for i, pred in enumerate(p.predictions):
        check_labels(pred, params, f"predictions[{i}]")
    return weights


def check_vote_payload(p: VotePayload, params: PoclParams) -> np.ndarray:
    """Returns the labels as a numpy array."""
    _check_round(p.round)
    for i, s in enumerate(p.scores):
        if not 0 <= s <= 10_000:
            raise PayloadError(E_BAD_SCORE, f"scores[{i}] must be between 0 and 10000 bps")
    return check_labels(p.labels, params, "labels")


# --------------------------------------------------------------------------- builders (miner side)
# The one way a miner (the node's, the simulator's) turns its weights, shard, labels, salt, predictions
# and scores into payloads. They take what the miner decided (an adversary may decide differently) and
# put it in the canonical wire form the chain checks; `shards_to_predict` and `vote_scores` give the
# honest inputs in the order the chain indexes them.


def build_commit(
    chain_id: str,
    round_: int,
    sender: bytes,
    weights: bytes,
    test_x: np.ndarray,
    labels: np.ndarray,
    salt: bytes,
    n_train: int,
) -> CommitPayload:
    """The commit a miner sends after training; it must keep `weights` (canonical encoded bytes, as it
    will reveal them), `test_x`, `labels` and `salt` to reveal them later."""
    return CommitPayload(
        round_,
        model_commitment(chain_id, round_, sender, weights_digest(weights)),
        label_commitment(chain_id, round_, sender, labels_array(labels), salt),
        shard_commitment(chain_id, round_, sender, shard_digest(test_x)),
        n_train,
    )


def shard_array(test_x: np.ndarray) -> NdArray:
    """Canonical wire form of a shard's inputs (little-endian float32)."""
    return NdArray.of(np.ascontiguousarray(test_x, dtype="<f4"))


def build_shard(round_: int, test_x: np.ndarray) -> ShardPayload:
    """Open the shard commitment once COMMIT has closed."""
    return ShardPayload(round_, shard_array(test_x))


def shards_to_predict(sender: bytes, shards: dict[bytes, NdArray]) -> list[np.ndarray]:
    """Test inputs of every OTHER shard owner in address order: what a predict tx labels, in its order.

    `shards` maps each shard owner (the round record's `shard_owners`) to its revealed `test_x`.
    """
    return [array_from_plain(shards[owner].to_list()) for owner in sorted(shards) if owner != sender]


def build_predict(round_: int, weights: bytes, predictions: list[np.ndarray]) -> PredictPayload:
    """Reveal the committed weights with one label vector per `shards_to_predict` shard (same order)."""
    return PredictPayload(round_, weights, [labels_array(p) for p in predictions])


def accuracy_bps(predicted: np.ndarray, labels: np.ndarray) -> int:
    """Accuracy of `predicted` against `labels` in integer basis points (floor): a vote's score unit."""
    return int(np.count_nonzero(np.asarray(predicted) == np.asarray(labels))) * BPS // len(labels)


def vote_scores(
    sender: bytes,
    labels: np.ndarray,
    shard_owners: list[bytes],
    revealed_predictions: dict[bytes, list[NdArray]],
) -> list[int]:
    """The scores every node recomputes for my vote: each OTHER revealed predictor's accuracy on my
    shard (bps, address order).

    `revealed_predictions` maps each revealed predictor (the record's `revealed`) to its predictions
    list (one array per other shard owner, address order), as stored in its predict entry.
    """
    mine = np.asarray(labels, dtype=np.int64)
    scores = []
    for p in sorted(revealed_predictions):
        if p == sender:
            continue
        owners = [c for c in sorted(shard_owners) if c != p]
        theirs = array_from_plain(revealed_predictions[p][owners.index(sender)].to_list())
        scores.append(accuracy_bps(theirs, mine))
    return scores


def build_vote(round_: int, labels: np.ndarray, salt: bytes, scores: list[int]) -> VotePayload:
    """Reveal my shard's labels and salt with the scores I report (`vote_scores` when honest)."""
    return VotePayload(round_, labels_array(labels), salt, list(scores))
