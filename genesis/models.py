"""A genesis for a given model: the `pocl` model fields and the chain limits that model needs.

A model's largest PoCL tx (a predict tx carries its encoded weights, ~4.8 MB for cnn-mnist) has to fit in
one tx (`max_pocl_tx_bytes`) and one block, and every phase window has to carry one tx from each of
`max_miners` eligible miners (`PoclParams.check_chain_params`). `fit_model` derives all of that from the
model spec instead of hard-coding numbers per model, so `testnet --model`, `genesis new --model` and the
devnet build a chain that passes `check_chain_params` with no hand edits:

1. the `pocl` section names the model with its input shape and class count (`ml.model.registry`);
2. `max_pocl_tx_bytes` is raised to the largest predict/shard tx;
3. `max_block_bytes` is raised so each window of its current length carries `max_miners` txs, up to
   `MAX_FITTED_BLOCK_BYTES` (a block travels as one p2p message, capped at 64 MiB); a window that still
   cannot carry them is lengthened (phases end early once every miner has acted, so a longer maximum
   costs nothing when miners are prompt);
4. `unbonding_blocks` is raised to outlast the longest round.

Limits are only ever raised, never lowered; chain params named in `fixed` (given explicitly by the user)
are left alone, and `check_chain_params` then says what does not fit.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection
from typing import Any

from pocl.consensus.pocl.params import PoclParams
from pocl.ledger.params import ChainParams

MAX_FITTED_BLOCK_BYTES = 32 * 1024 * 1024  # half the p2p message cap: room for the proposal/commit framing


class ModelFitError(ValueError):
    """Unknown model, or limits that cannot be fitted (one line for the user)."""


def model_names() -> list[str]:
    from pocl.ml.model.registry import model_names as names

    return names()


def pocl_for_model(model: str, pocl: dict[str, Any] | None = None) -> dict[str, Any]:
    """`pocl` with the model's id, input shape and class count set (raises ModelFitError if unknown)."""
    from pocl.ml.model.registry import get_model

    try:
        spec = get_model(model)
    except KeyError:
        raise ModelFitError(f"unknown model {model!r} (known: {', '.join(model_names())})") from None
    return {
        **(pocl or {}),
        "model": spec.name,
        "input_shape": list(spec.input_shape),
        "classes": spec.num_classes,
    }


def fit_model(
    model: str,
    pocl: dict[str, Any] | None = None,
    params: ChainParams | None = None,
    *,
    fixed: Collection[str] = (),
) -> tuple[dict[str, Any], ChainParams]:
    """The genesis `pocl` section and chain params for `model`, starting from `pocl`/`params`."""
    section = pocl_for_model(model, pocl)
    return fit_chain_params(section, params or ChainParams(), fixed=fixed)


def fit_chain_params(
    pocl: dict[str, Any], params: ChainParams, *, fixed: Collection[str] = ()
) -> tuple[dict[str, Any], ChainParams]:
    """Raise the limits `params` (and, if need be, the `pocl` window lengths) to what `pocl`'s model needs."""
    try:
        p = PoclParams.from_json(pocl)
        p.check_model()
    except ValueError as exc:
        raise ModelFitError(str(exc)) from None
    section = dict(pocl)
    changes: dict[str, int] = {}

    def settable(name: str) -> bool:
        return name not in fixed

    tx_need = max(p.max_predict_tx_bytes(), p.max_shard_tx_bytes())
    if settable("max_pocl_tx_bytes") and params.max_pocl_tx_bytes < tx_need:
        changes["max_pocl_tx_bytes"] = tx_need
    block_bytes = params.max_block_bytes
    if settable("max_block_bytes"):
        wanted = tx_need
        for _field, blocks, tx_bytes in p.phase_tx_bounds():
            per_block = min(math.ceil(p.max_miners / blocks), params.max_block_txs)
            wanted = max(wanted, per_block * tx_bytes)
        block_bytes = max(block_bytes, min(wanted, max(MAX_FITTED_BLOCK_BYTES, tx_need)))
        if block_bytes != params.max_block_bytes:
            changes["max_block_bytes"] = block_bytes
    for field, blocks, tx_bytes in p.phase_tx_bounds():
        per_block = min(params.max_block_txs, block_bytes // tx_bytes)
        if per_block >= 1 and blocks * per_block < p.max_miners:
            section[field] = math.ceil(p.max_miners / per_block)
    longest = PoclParams.from_json(section).max_round_blocks()
    if settable("unbonding_blocks") and params.unbonding_blocks < longest:
        changes["unbonding_blocks"] = longest
    return section, dataclasses.replace(params, **changes)


def check_fits(pocl: dict[str, Any], params: ChainParams) -> None:
    """Raise ModelFitError (one line naming the field) unless the chain params carry this `pocl` section."""
    try:
        p = PoclParams.from_json(pocl)
        p.check_model()
        p.check_chain_params(params)
    except ValueError as exc:
        raise ModelFitError(str(exc)) from None
