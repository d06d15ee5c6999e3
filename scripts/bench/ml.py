"""ML core throughput: exact canonical inference vs Keras, FedAvg / robust aggregation, Keras training.

    python -m scripts.bench.ml [--samples N] [--repeats N] [--json PATH]

- inference: the same cnn-mnist weights and the same random inputs through the exact fixed-point canonical
  inference `ml.model.inference.int_logits` (quantisation of weights and inputs included; its default: one
  BLAS thread, convolutions in chunks of `DEFAULT_BATCH` samples (Winograd for the 3x3 / 32-channel layer),
  dense layers in blocks of `DENSE_BATCH`; also reported with all BLAS threads and per chunk size, and
  checked bit-identical across them) and through the Keras float32 model (`model.predict`, best over batch
  sizes 32 and 128, so Keras gets its best figure); best of `--repeats` timed runs each after a warm-up.
  `canonical_to_keras_ratio` = canonical samples/s ÷ Keras samples/s (target >= 0.25);
- `fedavg_s`: seconds for `ml.model.aggregate.fedavg` over 10 / 50 / 100 cnn-mnist models (target <= 1 s at
  100), plus each robust rule over 10 models;
- `train_samples_per_s`: Keras training of cnn-mnist on random data (Adam, batch 64), after one warm-up
  epoch;
- weights encode / decode / hash time for one cnn-mnist model.
Prints a table and optionally writes JSON.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from pocl.ml.model.aggregate import aggregate, fedavg, parse_rule
from pocl.ml.model.inference import DEFAULT_BATCH, INFERENCE_BLAS_THREADS, int_logits, logits
from pocl.ml.model.registry import get_model
from pocl.ml.model.weights import decode_weights, encode_weights, initial_weights, weights_hash

from scripts.bench.report import best_time, print_rows, write_json

MODEL = "cnn-mnist"
FEDAVG_COUNTS = (10, 50, 100)
ROBUST_RULES = ("clip:2", "multi-krum:1", "median", "trimmed-mean:0.1")
ROBUST_MODELS = 10


def bench_inference(samples: int, repeats: int) -> dict[str, Any]:
    spec = get_model(MODEL)
    from pocl.ml.keras_model import build_keras_model

    w = initial_weights(spec, seed=0)
    x = np.random.default_rng(0).random((samples, *spec.input_shape), dtype=np.float32)
    model = build_keras_model(spec, w)
    keras_best = float("inf")
    keras_batch = 0
    for batch in (32, 128):
        model.predict(x[:batch], batch_size=batch, verbose=0)  # warm-up: graph tracing
        t = best_time(lambda b=batch: model.predict(x, batch_size=b, verbose=0), repeats)
        if t < keras_best:
            keras_best, keras_batch = t, batch
    int_logits(spec, w, x[:64])
    canonical = best_time(lambda: int_logits(spec, w, x), repeats)
    all_threads = best_time(lambda: int_logits(spec, w, x, blas_threads=None), repeats)
    zq = int_logits(spec, w, x)
    sweep_x = x[:512]
    by_batch = {
        str(b): len(sweep_x) / best_time(lambda b=b: int_logits(spec, w, sweep_x, batch_size=b), 1)
        for b in (2, 4, 8, 16, 32)
    }
    identical = bool(
        np.array_equal(int_logits(spec, w, x, blas_threads=None), zq)
        and all(np.array_equal(int_logits(spec, w, sweep_x, batch_size=b), zq[:512]) for b in (1, 7, 64))
    )
    zk = np.asarray(model.predict(x, batch_size=keras_batch, verbose=0))
    zn = logits(spec, w, x)
    return {
        "canonical_batch": DEFAULT_BATCH,
        "canonical_samples_per_s_by_batch": by_batch,
        "canonical_bit_identical_across_threads_and_batches": identical,
        "canonical_samples_per_s": samples / canonical,
        "keras_samples_per_s": samples / keras_best,
        "keras_best_batch": keras_batch,
        "canonical_to_keras_ratio": keras_best / canonical,
        "canonical_blas_threads": INFERENCE_BLAS_THREADS,
        "canonical_all_blas_threads_samples_per_s": samples / all_threads,
        "label_agreement": float(np.mean(np.argmax(zk, 1) == np.argmax(zn, 1))),
        "logits_max_abs_diff": float(np.abs(zk - zn).max()),
    }


def bench_aggregation(repeats: int) -> dict[str, Any]:
    spec = get_model(MODEL)
    g = initial_weights(spec, seed=0)
    rng = np.random.default_rng(1)
    models = [
        [(a + rng.normal(0, 0.01, a.shape)).astype(np.float32) for a in g] for _ in range(max(FEDAVG_COUNTS))
    ]
    fed = {str(n): best_time(lambda n=n: fedavg(g, models[:n]), repeats) for n in FEDAVG_COUNTS}
    robust = {
        rule: best_time(
            lambda r=rule: aggregate(g, models[:ROBUST_MODELS], parse_rule(r)), max(1, repeats - 1)
        )
        for rule in ROBUST_RULES
    }
    raw = encode_weights(g)
    return {
        "fedavg_s": fed,
        "robust_s": robust,
        "robust_models": ROBUST_MODELS,
        "weights_bytes": len(raw),
        "encode_s": best_time(lambda: encode_weights(g), repeats),
        "decode_s": best_time(lambda: decode_weights(spec, raw), repeats),
        "hash_s": best_time(lambda: weights_hash(g), repeats),
    }


def bench_training(samples: int) -> dict[str, Any]:
    import keras
    from pocl.ml.keras_model import build_keras_model

    spec = get_model(MODEL)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(2)
    x = rng.random((samples, *spec.input_shape), dtype=np.float32)
    y = rng.integers(0, spec.num_classes, samples)
    model = build_keras_model(spec, initial_weights(spec, seed=0))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x[:256], y[:256], epochs=1, batch_size=64, verbose=0)  # warm-up: graph tracing
    t0 = time.perf_counter()
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    return {"train_samples_per_s": samples / (time.perf_counter() - t0), "train_samples": samples}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=2048, help="inference samples (default 2048)")
    ap.add_argument("--train-samples", type=int, default=1024, help="training samples (default 1024)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats, best taken (default 3)")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON here")
    args = ap.parse_args(argv)
    if args.samples < 1 or args.repeats < 1 or args.train_samples < 64:
        ap.error("--samples and --repeats must be >= 1, --train-samples >= 64")

    import keras

    result: dict[str, Any] = {
        "model": MODEL,
        "params": get_model(MODEL).param_count(),
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "keras": keras.__version__,
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_1min_at_start": os.getloadavg()[0],
        },
        "samples": args.samples,
    }
    result.update(bench_inference(args.samples, args.repeats))
    result.update(bench_aggregation(args.repeats))
    result.update(bench_training(args.train_samples))

    rows = [
        (f"exact canonical inference ({INFERENCE_BLAS_THREADS} BLAS thread, chunks of {DEFAULT_BATCH})", f"{result['canonical_samples_per_s']:,.0f} samples/s"),
        (f"Keras predict (batch {result['keras_best_batch']})", f"{result['keras_samples_per_s']:,.0f} samples/s"),
        ("canonical / Keras", f"{result['canonical_to_keras_ratio']:.2f}  (target >= 0.25)"),
        ("canonical, all BLAS threads", f"{result['canonical_all_blas_threads_samples_per_s']:,.0f} samples/s"),
        ("canonical by chunk size (512 samples)", ", ".join(f"{b}: {v:,.0f}" for b, v in result["canonical_samples_per_s_by_batch"].items())),
        ("bit-identical across threads / chunks", str(result["canonical_bit_identical_across_threads_and_batches"])),
        ("label agreement / max |Δlogit|", f"{result['label_agreement']:.4f} / {result['logits_max_abs_diff']:.2e}"),
        *[(f"fedavg of {n} models", f"{s:.3f} s") for n, s in result["fedavg_s"].items()],
        *[(f"{rule} of {ROBUST_MODELS} models", f"{s:.3f} s") for rule, s in result["robust_s"].items()],
        ("weights encode / decode / hash", f"{result['encode_s'] * 1e3:.1f} / {result['decode_s'] * 1e3:.1f} / "
         f"{result['hash_s'] * 1e3:.1f} ms ({result['weights_bytes']:,} B)"),
        ("Keras training (Adam, batch 64)", f"{result['train_samples_per_s']:,.0f} samples/s"),
    ]  # fmt: skip
    print(
        f"ML core benchmark: {MODEL} ({result['params']:,} parameters), {os.cpu_count()} CPUs, "
        f"load average at start {result['machine']['loadavg_1min_at_start']:.1f}"
    )
    print_rows(rows, indent="  ")
    write_json(args.json, result, sort_keys=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
