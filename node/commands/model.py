"""`pocl-node model export|predict`: the global model of a round as `.npz` (numpy) or `.keras` (DESIGN §7),
and its canonical predictions for inputs in a file.

The weights come from a running node over RPC (`/models/global?round=N&format=npz`, `--node URL` or the
home's RPC address) or, with `--from-store` (node stopped), straight from the home's database. A `.npz`
holds one array per parameter in Keras order plus `meta_model`, `meta_round`, `meta_model_hash`; read it
with `np.load(path, allow_pickle=False)`. `.keras` needs TensorFlow (the `miner` extra): it is compiled
(softmax output, `evaluate(x, y)` works as loaded) and records the input preprocessing inside the archive
(`pocl_metadata.json`) and next to it (`FILE.keras.json`).

`model predict` runs the canonical inference (`pocl.ml.model.inference.predict`, exact fixed point, no
TensorFlow) on the canonical preprocessing (`pocl.ml.export`): the labels every node computes.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

from pocl.ledger.storage.durable_file import PUBLIC_MODE, replace_durably
from pocl.node.commands._common import add_command_parser, add_subcommands, emit, home_of
from pocl.node.errors import UserError
from pocl.node.rpc.client import add_node_args, client_for

HELP = "export a round's global model (.npz or .keras), or predict with it"
DESCRIPTION = """\
examples:
  pocl-node model export --round 5 --out model.npz
  pocl-node model export --out latest.keras              (current global model, needs TensorFlow)
  pocl-node model export --round 3 --out m.npz --from-store   (node stopped: read the home's database)
  pocl-node model predict --round latest --input x.npy        (labels of the samples in x.npy)
  pocl-node model predict --weights model.npz --input digit.png --json
"""
PREDICT_DESCRIPTION = """\
Inputs: .npy (one array), .npz (array 'x', optionally labels 'y': accuracy is reported) or an image
(.png/.jpg, needs Pillow from the miner extra) of exactly the model's size. Shapes (N, H, W, C) or one
sample (H, W, C); (N, H, W) / (H, W) for one channel. Integer pixels 0..255 are divided by 255, floats
must lie in [0, 1] (the datasets' scaling). Labels come from the canonical exact inference: the same
labels every node computes.
"""
MAX_MODEL_BYTES = 512 * 1024 * 1024
SUFFIXES = (".npz", ".keras")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = add_command_parser(subparsers, "model", HELP, DESCRIPTION)
    sub = add_subcommands(p, "model_command")
    e = add_command_parser(sub, "export", "write a round's global model to FILE (.npz or .keras)")
    e.add_argument(
        "--round", default="latest", metavar="N", help="round number, 0 = genesis (default: latest)"
    )
    e.add_argument("--out", required=True, type=Path, metavar="FILE", help="output file (.npz or .keras)")
    e.add_argument("--from-store", action="store_true", help="read the home's database instead of RPC")
    e.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    add_node_args(e)
    pr = add_command_parser(
        sub, "predict", "label inputs with a round's global model (canonical inference)", PREDICT_DESCRIPTION
    )
    pr.add_argument(
        "--round", default="latest", metavar="N", help="round number, 0 = genesis (default: latest)"
    )
    pr.add_argument("--input", required=True, type=Path, metavar="FILE", help=".npy, .npz or .png inputs")
    src = pr.add_mutually_exclusive_group()
    src.add_argument("--from-store", action="store_true", help="read the home's database instead of RPC")
    src.add_argument("--weights", type=Path, metavar="FILE.npz", help="an exported .npz instead of the node")
    pr.add_argument("--limit", type=int, default=20, metavar="K", help="samples listed without --json")
    add_node_args(pr)
    return p


def _via_rpc(args: argparse.Namespace, round_ref: str) -> bytes:
    client = client_for(args)
    with client:
        return client.request_bytes(
            "GET", f"/models/global?round={round_ref}&format=npz", max_bytes=MAX_MODEL_BYTES
        )


def _via_store(args: argparse.Namespace, round_ref: str) -> bytes:
    from pocl.consensus.pocl.execution import PoclExecution
    from pocl.consensus.pocl.params import PoclParams
    from pocl.ledger.storage.store import Store, StoreError
    from pocl.ml.model.weights import decode_weights
    from pocl.node.rpc.model_npz import model_arrays, npz_bytes

    home = home_of(args)
    config = home.load_config()
    genesis = home.load_genesis()
    pocl = PoclExecution(PoclParams.from_json(genesis.pocl))
    db = config.resolve(home.root, config.storage.db_path)
    if not db.exists():
        raise UserError(f"no database at {db}")
    try:
        store = Store.open(db)
    except StoreError as exc:
        raise UserError(f"{exc} (is the node running? then export over RPC without --from-store)") from None
    try:
        state = store.load_state(genesis.params)
        head = pocl.head(state)
        if round_ref == "latest":
            n, model_hash = (head.model_round, head.model_hash) if head else (0, pocl.genesis_model()[0])
        else:
            n = int(round_ref)
            if n == 0:
                model_hash = pocl.genesis_model()[0]
            else:
                rec = pocl.record(state, n)
                if rec is None or rec.outcome is None:
                    raise UserError(f"round {n} is not final in {db}")
                model_hash = rec.outcome.model_hash
        raw = store.get_model(model_hash)
        if raw is not None and store.model_pruned(model_hash):
            raise UserError(f"model {model_hash.hex()} is pruned in {db} ([pruning] model_history)")
        if raw is None:
            if model_hash != pocl.genesis_model()[0]:
                raise UserError(f"model {model_hash.hex()} is missing from {db}")
            raw = pocl.genesis_model()[1]
        spec = pocl.params.model_spec()
        return npz_bytes(model_arrays(spec, decode_weights(spec, raw), n, model_hash))
    finally:
        store.close()


def _write_keras(path: Path, npz: bytes) -> None:
    from pocl.ml.model.registry import get_model
    from pocl.node.rpc.model_npz import weights_from_npz

    weights, meta = weights_from_npz(npz)
    if importlib.util.find_spec("keras") is None:  # TensorFlow itself is imported in ml/export.py only
        raise UserError(
            "writing .keras needs TensorFlow (install the miner extra: pip install 'pocl[miner]') - "
            "use a .npz file"
        )
    from pocl.ml.export import write_keras

    tmp = path.with_name(f".{path.name}.tmp.keras")
    try:
        write_keras(tmp, get_model(str(meta["model"])), weights, meta)
        tmp.replace(path)
        tmp.with_name(tmp.name + ".json").replace(path.with_name(path.name + ".json"))
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".json").unlink(missing_ok=True)


def _round_ref(args: argparse.Namespace) -> str:
    ref = str(args.round)
    if ref != "latest" and not ref.isdigit():
        raise UserError(f"--round must be a number or 'latest', got {ref!r}")
    return ref


def run(args: argparse.Namespace) -> int:
    if args.model_command == "predict":
        return _predict(args)
    from pocl.node.rpc.model_npz import weights_from_npz

    ref = _round_ref(args)
    out: Path = args.out
    if out.suffix not in SUFFIXES:
        raise UserError(f"--out must end with .npz or .keras, got {out.name!r}")
    if out.exists() and not args.force:
        raise UserError(f"{out} exists (use --force to overwrite)")
    npz = _via_store(args, ref) if args.from_store else _via_rpc(args, ref)
    weights, meta = weights_from_npz(npz)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npz":
        replace_durably(out, npz, PUBLIC_MODE)
    else:
        _write_keras(out, npz)
    info = {**meta, "file": str(out), "tensors": len(weights), "params": int(sum(w.size for w in weights))}
    emit(
        args,
        info,
        f"wrote {out}: {meta['model']} round {meta['round']} ({info['params']} parameters, "
        f"hash {meta['model_hash']})",
    )
    return 0


def _predict(args: argparse.Namespace) -> int:
    import numpy as np
    from pocl.ml.export import InputError, load_input_file, predict
    from pocl.ml.model.registry import UnknownModelError, get_model
    from pocl.node.rpc.model_npz import weights_from_npz

    ref = _round_ref(args)
    if args.weights is not None:
        if not args.weights.is_file():
            raise UserError(f"--weights: no file {args.weights}")
        if args.weights.stat().st_size > MAX_MODEL_BYTES:
            raise UserError(f"--weights: {args.weights} is larger than {MAX_MODEL_BYTES} bytes")
        npz = args.weights.read_bytes()
    else:
        npz = _via_store(args, ref) if args.from_store else _via_rpc(args, ref)
    try:
        weights, meta = weights_from_npz(npz)
        spec = get_model(str(meta["model"]))
    except UnknownModelError as exc:
        raise UserError(str(exc)) from None
    except (ValueError, OSError, KeyError) as exc:
        raise UserError(f"not a global-model .npz (see model export): {exc}") from None
    try:
        x, y = load_input_file(args.input, spec)
        out = predict(spec, weights, x)
    except InputError as exc:
        raise UserError(f"--input: {exc}") from None
    except ValueError as exc:  # weights that do not fit the spec
        raise UserError(f"cannot run {spec.name} with these weights: {exc}") from None
    doc: dict[str, Any] = {**meta, "input": str(args.input), **out}
    if y is not None:
        y = np.asarray(y).reshape(-1)
        if y.shape[0] != out["count"] or y.dtype.kind not in "iu":
            raise UserError(f"--input: 'y' must hold {out['count']} integer labels, got {y.shape} {y.dtype}")
        correct = int((np.asarray(out["labels"]) == y).sum())
        doc["accuracy"] = correct / max(1, out["count"])
        doc["correct"] = correct
    lines = [f"{meta['model']} round {meta['round']} (hash {meta['model_hash']}): {out['count']} samples"]
    names = out["classes"]
    for i, label in enumerate(out["labels"][: max(0, args.limit)]):
        lines.append(f"  {i}: {label}" + (f" ({names[i]})" if names and names[i] != str(label) else ""))
    if out["count"] > args.limit:
        lines.append(f"  ... {out['count'] - args.limit} more (--json for all)")
    if "accuracy" in doc:
        lines.append(f"accuracy {doc['accuracy']:.4f} ({doc['correct']}/{out['count']})")
    emit(args, doc, "\n".join(lines))
    return 0
