"""Candidate verification: were the claimed labels produced by the revealed model? (DESIGN §5.2)

The k-NN attack of the PoCL paper predicts other miners' shards with something else (k-NN, a bigger
private model, copied answers) while revealing a cheap model to be averaged. Before a candidate can win,
every node re-runs canonical inference (`ml.model.inference.predict`) of the candidate's revealed weights on
EVERY shard that scored it and compares with its claims: nothing is sampled, so there is no seed to grind
and a faker of one shard among many is caught whenever it would win.

Verdict, per candidate: **any** claimed label that differs from the canonical label is prediction fraud.
Canonical inference is exact integer arithmetic (fixed point; ties to the lowest class), so its labels are
bit-identical on every machine, BLAS, thread count and batch size: an honest miner, who produces its
claims with the same function, never disagrees, and no threshold or allowance is needed.

Evidence holds the weights hash, the checked shard owners and the sample count; anyone can reproduce the
verdict by re-running inference.
"""

from __future__ import annotations

import dataclasses

import numpy as np


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
    mismatches: int  # claimed labels that differ from the canonical ones (exact, machine-independent)


def verify_claims(spec: object, weights: list[np.ndarray], claims: list[ShardClaim]) -> Verdict:
    """Re-run canonical inference on the claimed shards (one batch) and judge the claims exactly."""
    from pocl.ml.model.inference import predict

    owners = tuple(c.owner for c in claims)
    if not claims:
        return Verdict(True, owners, 0, 0)
    x = np.concatenate([c.x for c in claims], axis=0)
    claimed = np.concatenate([c.claimed for c in claims], axis=0)
    labels, _ = predict(spec, weights, x)  # type: ignore[arg-type]
    mismatches = int(np.count_nonzero(labels != claimed))
    return Verdict(mismatches == 0, owners, int(x.shape[0]), mismatches)
