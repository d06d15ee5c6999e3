"""The one rendering of chain data and node events as JSON, for the HTTP routes and the WebSocket stream.

Bytes are rendered by `to_json` everywhere: a 20-byte value is an address (`0x…`), other bytes are
plain hex (hashes, signatures) and values over `MAX_INLINE_BYTES` are summarised as `<N bytes>`. Events
are dataclasses; their field names are the JSON keys.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pocl.consensus.pocl.events import Jailed, RewardPaid, RoundFinalized, RoundOpened, Slashed
from pocl.ledger.block import Block, Commit
from pocl.ledger.events import Event
from pocl.ledger.keys import ADDRESS_LEN, address_of, format_address
from pocl.ledger.tx import SignedTx
from pocl.node.events import BlockCommitted, NodeEvent, PoclPhaseEvent, PoclRoundEvent
from pocl.node.rpc.types import (
    BlockView,
    CommitSignatureView,
    CommitView,
    HeaderView,
    LocatedTxView,
    RawTxView,
    TxView,
)

MAX_INLINE_BYTES = 4096
ROUND_STEP_NAMES: dict[type[Event], str] = {
    RoundOpened: "opened",
    RoundFinalized: "finalized",
    RewardPaid: "reward",
    Slashed: "slash",
    Jailed: "jail",
}


def hexstr(b: bytes) -> str:
    return b.hex()


def to_json(value: Any) -> Any:
    """Plain JSON of a value holding bytes, sequences, mappings and scalars."""
    if isinstance(value, bytes):
        if len(value) == ADDRESS_LEN:
            return format_address(value)
        return value.hex() if len(value) <= MAX_INLINE_BYTES else f"<{len(value)} bytes>"
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


def fields_json(obj: Any) -> dict[str, Any]:
    """A dataclass's fields as a JSON object (field names are the keys)."""
    return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


# --------------------------------------------------------------------------- chain data


def header_json(block: Block) -> HeaderView:
    h = block.header
    return {
        "height": h.height,
        "time_ms": h.time_ms,
        "prev_hash": hexstr(h.prev_hash),
        "proposer": format_address(h.proposer),
        "txs_root": hexstr(h.txs_root),
        "state_root": hexstr(h.state_root),
        "last_commit_hash": hexstr(h.last_commit_hash),
        "round_info": hexstr(h.round_info),
    }


def tx_json(stx: SignedTx) -> TxView:
    tx = stx.tx
    return {
        "hash": hexstr(stx.hash),
        "kind": tx.kind,
        "chain_id": tx.chain_id,
        "sender": format_address(stx.sender_address),
        "nonce": tx.nonce,
        "fee": tx.fee,
        "payload": to_json(tx.payload),
        "size": len(stx.raw),
    }


def commit_json(commit: Commit) -> CommitView:
    signatures: list[CommitSignatureView] = [
        {
            "validator": format_address(address_of(s.validator)),
            "pubkey": hexstr(s.validator),
            "signature": hexstr(s.signature),
        }
        for s in commit.signatures
    ]
    return {
        "height": commit.height,
        "round": commit.round,
        "block_hash": hexstr(commit.block_hash),
        "hash": hexstr(commit.hash),
        "signatures": signatures,
    }


def block_json(block: Block, txs: bool = True) -> BlockView:
    decoded: list[TxView | RawTxView] = []
    for raw in block.txs if txs else ():
        try:
            decoded.append(tx_json(SignedTx.decode(raw)))
        except Exception:  # a committed tx always decodes; keep the view robust anyway
            decoded.append({"raw": raw.hex()})
    last_commit = commit_json(block.last_commit) if block.last_commit is not None else None
    if not txs:
        return {
            "hash": hexstr(block.hash),
            "header": header_json(block),
            "num_txs": len(block.txs),
            "last_commit": last_commit,
        }
    return {
        "hash": hexstr(block.hash),
        "header": header_json(block),
        "num_txs": len(block.txs),
        "txs": decoded,
        "last_commit": last_commit,
    }


def located_tx_json(stx: SignedTx, height: int, index: int) -> LocatedTxView:
    return {**tx_json(stx), "status": "committed", "height": height, "index": index}  # type: ignore[typeddict-item]


def located_txs_json(block: Block) -> list[LocatedTxView]:
    """The committed txs of a block with their index (a committed tx always decodes)."""
    return [located_tx_json(SignedTx.decode(raw), block.height, i) for i, raw in enumerate(block.txs)]


def tx_hash_hex(raw: bytes) -> str:
    try:
        return hexstr(SignedTx.decode(raw).hash)
    except Exception:  # committed txs always decode; keep the stream robust anyway
        return ""


# --------------------------------------------------------------------------- event stream


def executor_event_json(event: Event) -> dict[str, Any]:
    return {"kind": event.event_kind, "data": fields_json(event)}


def _tx_messages(height: int, tx_hashes: list[str]) -> list[dict[str, Any]]:
    return [{"type": "tx", "hash": h, "height": height} for h in tx_hashes]


def stream_messages(event: NodeEvent) -> list[dict[str, Any]]:
    """The `/events` messages of one node event: a block is followed by one `tx` message per tx."""
    match event:
        case BlockCommitted():
            hashes = [hexstr(h) for h in event.tx_hashes]
            block = {
                "type": "block",
                "height": event.height,
                "hash": hexstr(event.hash),
                "time_ms": event.time_ms,
                "txs": event.txs,
                "round": event.round,
                "interval_s": event.interval_s,
                "synced": event.synced,
                "tx_hashes": hashes,
                "events": [executor_event_json(e) for e in event.events],
            }
            return [block, *_tx_messages(event.height, hashes)]
        case PoclRoundEvent():
            step = ROUND_STEP_NAMES[type(event.step)]
            return [{"type": "round", "event": step, "height": event.height, **fields_json(event.step)}]
        case PoclPhaseEvent():
            phase = {"type": "phase", "height": event.height, "round": event.round, "phase": event.phase}
            if event.start_height is not None:
                phase["start_height"] = event.start_height
            return [phase]
    return []


def replayed_block_messages(block: Block) -> list[dict[str, Any]]:
    """The stream messages of a stored block (replay carries no executor events)."""
    hashes = [tx_hash_hex(raw) for raw in block.txs]
    head: dict[str, Any] = {
        "type": "block",
        "height": block.height,
        "hash": hexstr(block.hash),
        "time_ms": block.header.time_ms,
        "txs": len(block.txs),
        "tx_hashes": hashes,
        "replayed": True,
    }
    return [head, *_tx_messages(block.height, hashes)]
