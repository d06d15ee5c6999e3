"""PoCL round overhead: what a node spends on the round protocol itself (not on training).

    python -m scripts.bench.pocl [--miners 4,10,20] [--model cnn-digits] [--repeats N] [--json PATH]

For each miner count n, with random-but-real models (perturbed G_0) and random test shards:
- `predict_tx_ms`: `accept_predict` for one pocl.predict tx (decode + check weights, hash, commitment),
  the per-tx cost every node pays in block execution;
- `finalize_ms`: `finalize_round` (accuracy matrix, medians, exhaustive verification of candidates by
  canonical inference, G_{r-1}'s baseline and G_r's labels on every voter's shard, robust aggregation,
  payouts), the cost of the round's last block;
- `verify_ms_per_candidate` / `aggregate_ms`: the two heavy parts of finalization on their own.
Every miner is honest, so verification runs on exactly K candidates, each on all n - 1 shards that
scored it (exhaustive: nothing is sampled). BLAS is limited to one thread
(threadpoolctl) when available, as a busy validator would want. Prints a table; `--json` writes it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import platform
from typing import Any

import numpy as np
from pocl.consensus.pocl.finalize import finalize_round
from pocl.consensus.pocl.params import PoclParams
from pocl.consensus.pocl.records import PHASE_PREDICT, RoundData, RoundRecord
from pocl.consensus.pocl.schedule import advance
from pocl.consensus.pocl.validate import accept_commit, accept_predict, accept_shard, accept_vote
from pocl.consensus.pocl.verify import ShardClaim, verify_claims
from pocl.ml.adversary import Behaviour
from pocl.ml.model.aggregate import aggregate
from pocl.ml.model.inference import predict
from pocl.ml.model.weights import initial_weights, weights_hash
from pocl.ml.shards import MinerData
from pocl.node.miner_payloads import (
    commit_payload,
    predict_payload,
    round_secrets,
    shard_payload,
    vote_payload,
)

from scripts.bench.report import best_time, write_json

CHAIN_ID = "bench"
TX = b"\x00" * 32
HONEST = Behaviour()


def build_round(n: int, params: PoclParams) -> tuple[RoundData, list[np.ndarray], list[Any]]:
    """One full round of n honest miners, their payloads made as a node's miner makes them
    (`node.miner_payloads`), each accepted by the chain's rules."""
    spec = params.model_spec()
    rng = np.random.default_rng(n)
    g = initial_weights(spec, params.init_seed)
    addrs = sorted(hashlib.sha256(b"m%d" % i).digest()[:20] for i in range(n))
    models = {a: [(w + rng.normal(0, 0.05, w.shape)).astype(np.float32) for w in g] for a in addrs}
    data = {a: _random_pool(params, rng) for a in addrs}
    secrets = {
        a: round_secrets(
            HONEST, params, 1, weights_hash(g), g, models[a], data[a], salt=b"\x01" * 32, model_seed=0
        )
        for a in addrs
    }
    rec = RoundRecord.open(1, 1, addrs, weights_hash(g))
    commits, shards, preds, votes = {}, {}, {}, {}
    for a in addrs:
        rec, commits[a] = accept_commit(rec, a, commit_payload(CHAIN_ID, a, secrets[a]), params, 1, TX)
    rec = advance(rec, 1)
    digests: set[bytes] = set()
    for a in addrs:
        rec, shards[a] = accept_shard(
            rec, a, shard_payload(secrets[a]), commits[a], params, CHAIN_ID, 2, TX, digests.__contains__
        )
        digests.add(shards[a].digest)
    rec = advance(rec, 2)
    predict_payloads = {}
    for a in addrs:
        seen = RoundData.build(rec, commits.values(), shards.values(), [], [])
        predict_payloads[a] = predict_payload(HONEST, spec, a, secrets[a], seen, data[a])
        rec, preds[a] = accept_predict(rec, a, predict_payloads[a], commits[a], params, CHAIN_ID, 3, TX)
    rec = advance(rec, 3)
    for a in addrs:
        seen = RoundData.build(rec, commits.values(), shards.values(), preds.values(), [])
        vote = vote_payload(HONEST, a, secrets[a], seen)
        rec, votes[a] = accept_vote(rec, a, vote, commits[a], params, CHAIN_ID, 4, TX)
    round_data = RoundData.build(rec, commits.values(), shards.values(), preds.values(), votes.values())
    a0 = addrs[0]
    xs = {a: secrets[a].test_x for a in addrs}
    extra = [rec, predict_payloads[a0], commits[a0], a0, models, xs]
    return round_data, g, extra


def _random_pool(params: PoclParams, rng: np.random.Generator) -> MinerData:
    """A miner whose held-out pool is exactly one random test shard (its training data is unused here)."""
    x = rng.random((params.test_shard_size, *params.input_shape), dtype=np.float32)
    y = rng.integers(0, params.classes, params.test_shard_size)
    return MinerData(x_train=x, y_train=y, pool_x=x, pool_y=y, shard_seed=0)


def bench(n: int, params: PoclParams, repeats: int) -> dict[str, Any]:
    data, g, (rec, p0, c0, a0, models, xs) = build_round(n, params)
    pre_predict = dataclasses.replace(rec, phase=PHASE_PREDICT, predictors=[], revealed=[], voters=[])
    predict_s = best_time(lambda: accept_predict(pre_predict, a0, p0, c0, params, CHAIN_ID, 3, TX), repeats)
    finalize_s = best_time(lambda: finalize_round(data, g, params, CHAIN_ID, lambda h: False), repeats)
    spec = params.model_spec()
    owners = [o for o in sorted(xs) if o != a0]
    claims = [ShardClaim(o, xs[o], predict(spec, models[a0], xs[o])[0]) for o in owners]
    verify_s = best_time(lambda: verify_claims(spec, models[a0], claims), repeats)
    winners = [models[a] for a in sorted(models)[: params.winners]]
    aggregate_s = best_time(lambda: aggregate(g, winners, params.aggregation_rule()), repeats)
    return {
        "miners": n,
        "predict_tx_bytes": len(p0.encode()),
        "predict_tx_ms": predict_s * 1e3,
        "finalize_ms": finalize_s * 1e3,
        "verify_ms_per_candidate": verify_s * 1e3,
        "aggregate_ms": aggregate_s * 1e3,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--miners", default="4,10,20")
    ap.add_argument("--model", default="cnn-digits")
    ap.add_argument("--shard", type=int, default=20)
    ap.add_argument("--winners", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=str, default=None)
    args = ap.parse_args(argv)
    from pocl.ml.model.registry import get_model

    spec = get_model(args.model)
    params = PoclParams(
        model=args.model,
        input_shape=tuple(spec.input_shape),
        classes=spec.num_classes,
        test_shard_size=args.shard,
        winners=args.winners,
    )
    try:
        from threadpoolctl import threadpool_limits

        limit: Any = threadpool_limits(limits=1, user_api="blas")
    except ImportError:
        limit = contextlib.nullcontext()
    with limit:
        rows = [bench(int(n), params, args.repeats) for n in args.miners.split(",")]
    cols = list(rows[0])
    print(f"PoCL round overhead, model {args.model}, shard {args.shard}, K={args.winners}")
    print("  ".join(f"{c:>24}" for c in cols))
    for r in rows:
        print("  ".join(f"{r[c]:>24.2f}" if isinstance(r[c], float) else f"{r[c]:>24}" for c in cols))
    write_json(
        args.json, {"bench": "pocl", "model": args.model, "platform": platform.platform(), "rows": rows}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
