"""The plug-in interface of the state transition: transaction kinds and what they see (DESIGN §4).

A `TxKind` gives the payload `Struct`, a read-only `validate` and a mutating `apply`, its size limit and
whether the minimum fee applies; a `TxRegistry` maps kind names to kinds (an executor holds a snapshot:
no global registry). Names that are reserved but not registered are rejected with `kind_not_enabled`.
Kinds and begin/end-block hooks see the block through a `BlockContext` (hooks may append events to
`ctx.events`), and a kind sees its tx through a `TxContext`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from pocl.ledger.codec import Struct
from pocl.ledger.errors import TxError
from pocl.ledger.events import Event
from pocl.ledger.params import ChainParams
from pocl.ledger.state import Account, State
from pocl.ledger.tx import SignedTx


@dataclasses.dataclass
class BlockContext:
    height: int
    time_ms: int
    proposer: bytes  # consensus address of the proposer; its operator is credited with the fees
    chain_id: str
    params: ChainParams
    fees: int = 0
    events: list[Event] = dataclasses.field(default_factory=list)


class TxContext:
    """Per-tx view handed to a kind's validate/apply. `account` is the sender's account as validated
    (read-only; None if it does not exist yet); in `apply` the fee is already paid and nonce bumped."""

    __slots__ = ("account", "block", "index", "sender", "stx")

    def __init__(self, block: BlockContext, stx: SignedTx, sender: bytes, index: int) -> None:
        self.block = block
        self.stx = stx
        self.sender = sender  # address
        self.index = index
        self.account: Account | None = None

    @property
    def height(self) -> int:
        return self.block.height

    @property
    def params(self) -> ChainParams:
        return self.block.params


Validate = Callable[[State, TxContext, Any], TxError | None]
Apply = Callable[[State, TxContext, Any], None]
Hook = Callable[[State, BlockContext], None]


def _default_max_bytes(params: ChainParams) -> int:
    return params.max_tx_bytes


@dataclasses.dataclass(frozen=True)
class TxKind:
    name: str
    payload_type: type[Struct]
    validate: Validate  # read-only; return a TxError to reject
    apply: Apply  # runs only after validate passed; must not fail
    max_bytes: Callable[[ChainParams], int] = _default_max_bytes
    requires_min_fee: bool = True


class TxRegistry:
    """Kind name -> TxKind, plus reserved names that are rejected with `kind_not_enabled`."""

    def __init__(self, kinds: Iterable[TxKind] = (), reserved: Iterable[str] = ()) -> None:
        self._kinds: dict[str, TxKind] = {}
        self._reserved: set[str] = set(reserved)
        for k in kinds:
            self.register(k)

    def register(self, kind: TxKind) -> None:
        if kind.name in self._kinds:
            raise ValueError(f"tx kind {kind.name!r} already registered")
        self._kinds[kind.name] = kind
        self._reserved.discard(kind.name)

    def get(self, name: str) -> TxKind | None:
        return self._kinds.get(name)

    def is_reserved(self, name: str) -> bool:
        return name in self._reserved

    def names(self) -> list[str]:
        return sorted(self._kinds)

    def copy(self) -> TxRegistry:
        reg = TxRegistry(reserved=self._reserved)
        reg._kinds = dict(self._kinds)
        return reg
