"""`pocl-node model export`: the global model of a round as `.npz` (numpy) or `.keras` (DESIGN §7).

The weights come from a running node over RPC (`/models/global?round=N&format=npz`, `--node URL` or the
home's RPC address) or, with `--from-store` (node stopped), straight from the home's database. A `.npz`
holds one array per parameter in Keras order plus `meta_model`, `meta_round`, `meta_model_hash`; read it
with `np.load(path, allow_pickle=False)`. `.keras` needs TensorFlow (the `miner` extra).
"""

from __future__ import annotations

import argparse
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from pocl.ledger.storage.durable_file import PUBLIC_MODE, replace_durably
from pocl.node.commands._common import add_command_parser, add_subcommands, emit, home_of
from pocl.node.errors import UserError
from pocl.node.rpc.client import RpcUnavailable, add_node_args, client_for

HELP = "export a round's global model (.npz or .keras)"
DESCRIPTION = """\
examples:
  pocl-node model export --round 5 --out model.npz
  pocl-node model export --out latest.keras              (current global model, needs TensorFlow)
  pocl-node model export --round 3 --out m.npz --from-store   (node stopped: read the home's database)
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
    return p


def _via_rpc(args: argparse.Namespace, round_ref: str) -> bytes:
    client = client_for(args)
    url = f"{client.url}/models/global?round={round_ref}&format=npz"
    try:
        with urllib.request.urlopen(url, timeout=client.timeout) as resp:
            raw = resp.read(MAX_MODEL_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise client._http_error(exc) from None
    except (urllib.error.URLError, OSError) as exc:
        raise RpcUnavailable(
            f"cannot reach the node at {client.url}: {exc} (is it running? see --node)"
        ) from None
    if len(raw) > MAX_MODEL_BYTES:
        raise UserError(f"model from {client.url} is larger than {MAX_MODEL_BYTES} bytes")
    return raw


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
    try:
        from pocl.ml.keras_model import build_keras_model

        model = build_keras_model(get_model(str(meta["model"])), weights)
    except ImportError:
        raise UserError(
            "writing .keras needs TensorFlow (install the miner extra) - use a .npz file"
        ) from None
    model.save(path)


def run(args: argparse.Namespace) -> int:
    from pocl.node.rpc.model_npz import weights_from_npz

    ref = str(args.round)
    if ref != "latest" and not ref.isdigit():
        raise UserError(f"--round must be a number or 'latest', got {ref!r}")
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
