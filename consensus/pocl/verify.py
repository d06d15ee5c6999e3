"""Candidate verification: were the claimed labels produced by the revealed model? (DESIGN §5.2)

The k-NN attack of the PoCL paper predicts other miners' shards with something else (k-NN, a bigger
private model, copied answers) while revealing a cheap model to be averaged. Before a candidate can win,
every node re-runs canonical inference (`ml.model.inference.predict`) of the candidate's revealed weights on
`verify_shards` of the shards that scored it, chosen by the chain seed, and compares with its claims.

Verdict, per candidate:
- a mismatch on a sample whose relative top-2 margin exceeds `near_tie_margin` is fraud: such labels
  are machine-independent, so an honest miner running canonical inference never disagrees there;
- mismatches on near-tie samples are excused, but only up to `near_tie_allowance_bps` of the checked
  samples (at least one). Without that cap a model whose logits are all equal (a zero model) or
  non-finite (margins count as 0) makes *every* sample a near-tie, and the k-NN attack with a zero
  model - the very attack verification is for - would pass. An honest model disagrees with itself across
  machines only on samples with margins ~1e-6, i.e. essentially never.

Evidence holds only machine-independent facts (weights hash, checked shard owners, sample count): the
margins themselves are not bit-identical across machines, so they must not enter state. Anyone can
reproduce the verdict by re-running inference.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from pocl.consensus.pocl.params import PoclParams
from pocl.ledger.hashing import tagged_hash
from pocl.ledger.params import BPS

TAG_VERIFY_PICK = b"pocl/verify-pick"


@dataclasses.dataclass(frozen=True)
class ShardClaim:
    owner: bytes  # the shard's committer
    x: np.ndarray  # test inputs (test_shard_size, *input_shape) float32
    claimed: np.ndarray  # the candidate's claimed labels, int64


@dataclasses.dataclass(frozen=True)
class Verdict:
    ok: bool
    checked_owners: tuple[bytes, ...]
    samples: int
    decisive_mismatches: int  # diagnostics only (machine-dependent at the margin): never into state
    near_tie_mismatches: int


def choose_shards(seed: bytes, candidate: bytes, owners: list[bytes], count: int) -> list[bytes]:
    """`count` owners (all if fewer) ordered by H(seed, candidate, owner); returned in address order.

    The seed comes from a block after every prediction was fixed, so a miner cannot know which of its
    predictions will be re-checked when it makes them.
    """
    ranked = sorted(owners, key=lambda o: (tagged_hash(TAG_VERIFY_PICK, seed + candidate + o), o))
    return sorted(ranked[:count])


def near_tie_allowance(samples: int, params: PoclParams) -> int:
    return max(1, samples * params.near_tie_allowance_bps // BPS)


def verify_claims(
    spec: object, weights: list[np.ndarray], claims: list[ShardClaim], params: PoclParams
) -> Verdict:
    """Re-run canonical inference on the claimed shards (one batch) and judge the claims."""
    from pocl.ml.model.inference import predict

    owners = tuple(c.owner for c in claims)
    if not claims:
        return Verdict(True, owners, 0, 0, 0)
    x = np.concatenate([c.x for c in claims], axis=0)
    claimed = np.concatenate([c.claimed for c in claims], axis=0)
    labels, margins = predict(spec, weights, x)  # type: ignore[arg-type]
    mismatch = labels != claimed
    # NaN margins never excuse a mismatch (ml.model.inference maps them to 0, a near-tie; the cap then applies).
    decisive = ~(margins <= np.float32(params.near_tie_threshold))
    decisive_mm = int(np.count_nonzero(mismatch & decisive))
    near_mm = int(np.count_nonzero(mismatch & ~decisive))
    samples = int(x.shape[0])
    ok = decisive_mm == 0 and near_mm <= near_tie_allowance(samples, params)
    return Verdict(ok, owners, samples, decisive_mm, near_mm)
