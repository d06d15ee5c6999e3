"""The `.npz` layout of a global model: the RPC's `/models/global?format=npz` download and the CLI's
`model export` write it, `weights_from_npz` reads it back (numpy's format, never unpickled)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from pocl.ml.model.registry import ModelSpec


def model_arrays(
    spec: ModelSpec, weights: list[np.ndarray], round_: int, model_hash: bytes
) -> dict[str, np.ndarray]:
    """One array per parameter in Keras order, plus metadata as plain arrays."""
    out: dict[str, np.ndarray] = {}
    for i, (p, w) in enumerate(zip(spec.params(), weights, strict=True)):
        out[f"w{i:02d}_layer{p.layer_index}_{p.role}"] = np.asarray(w)
    out["meta_model"] = np.array(spec.name)
    out["meta_round"] = np.array(round_, dtype=np.int64)
    out["meta_model_hash"] = np.array(model_hash.hex())
    return out


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def weights_from_npz(raw: bytes | str | Any) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Read our `.npz` layout back (never unpickles): (weights in order, metadata)."""
    src = io.BytesIO(raw) if isinstance(raw, (bytes, bytearray)) else raw
    with np.load(src, allow_pickle=False) as data:
        names = sorted(k for k in data.files if k.startswith("w"))
        weights = [data[k] for k in names]
        meta = {
            "model": str(data["meta_model"]) if "meta_model" in data.files else None,
            "round": int(data["meta_round"]) if "meta_round" in data.files else None,
            "model_hash": str(data["meta_model_hash"]) if "meta_model_hash" in data.files else None,
        }
    return weights, meta
