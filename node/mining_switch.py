"""Mining on and off at run time without losing a round (`pocl-node miner on|off|status`).

`off` pauses the miner (it commits to no new round), sends `miner.unregister` at once, and lets it finish
the round it committed to (shard, reveal, vote: leaving early is a withholding penalty). Unregistering
mid-round is safe because a round's eligible set is frozen when it opens (the chain still expects this
round's duties), and sending it now rather than after the vote keeps the miner out of the next round's
eligible set: an unregistration that lands after the next round opened would leave an absent eligible
miner holding that round's COMMIT open to its full length.
`on` starts the miner if the node runs without one (that needs the `miner` extra, as `run --mine`
does), resumes it, and sends `miner.register` unless the account is registered: it mines from the
next round whose eligible set (read at that round's first block) includes it.

Both answer at once; what is still pending (finishing a round, a registration tx) shows in `state`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from pocl.consensus.pocl.execution import PoclExecution
from pocl.genesis.schema import Genesis
from pocl.ledger.keys import PrivateKey, format_address
from pocl.ledger.params import ChainParams
from pocl.ledger.roles import is_miner
from pocl.ledger.tx import SignedTx, make_register_miner, make_unregister_miner
from pocl.node.chain import Chain
from pocl.node.events import BlockCommitted, NodeEvent, NodeEventListener
from pocl.node.mempool import AddResult, Mempool
from pocl.node.miner_duty import OpenDuty, WithholdCost

log = logging.getLogger("pocl.miner")

POLL_S = 1.0  # re-check the open duty this often even without a new block


class SwitchableMiner(Protocol):
    committing: bool

    def open_duty(self) -> OpenDuty | None: ...

    def withhold_cost(self, round_: int) -> WithholdCost: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...


class SwitchNode(Protocol):
    miner: Any  # SwitchableMiner | None (node.miner.Miner)
    account_key: PrivateKey | None
    chain: Chain | None
    mempool: Mempool | None
    genesis: Genesis
    params: ChainParams
    pocl: PoclExecution

    def submit_tx(self, raw: bytes) -> AddResult: ...

    def subscribe(self, listener: NodeEventListener) -> Callable[[], None]: ...

    async def start_miner(self) -> None: ...


class MiningSwitchError(Exception):
    """The switch cannot do what was asked; `status` and `code` are the RPC's answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class MiningSwitch:
    def __init__(self, node: SwitchNode, is_stopping: Callable[[], bool] = lambda: False) -> None:
        self.node = node
        self.is_stopping = is_stopping  # the node is draining or stopping: `on` is refused
        self._lock = asyncio.Lock()  # one switch at a time (`on` may take seconds to start a miner)
        self._progress = ""  # what `off` is waiting for, while it waits
        self._failure = ""  # why the last unregistration could not be sent
        self._off_task: asyncio.Task[None] | None = None
        self._sent: dict[str, bytes] = {}  # tx kind -> hash of the last one sent
        self._block = asyncio.Event()

    # ------------------------------------------------------------------ state

    @property
    def address(self) -> bytes | None:
        key = self.node.account_key
        return key.address if key is not None else None

    def _registered(self) -> bool | None:
        if self.node.chain is None or self.address is None:
            return None
        return is_miner(self.node.chain.state, self.address)

    def _in_flight(self, kind: str) -> bool:
        sent = self._sent.get(kind)
        return sent is not None and self.node.mempool is not None and sent in self.node.mempool

    def state(self) -> dict[str, Any]:
        miner = self.node.miner
        duty = miner.open_duty() if miner is not None else None
        commitment = None
        if duty is not None:
            commitment = {**duty.to_json(), "cost_if_left": miner.withhold_cost(duty.round).to_json()}
        return {
            "mining": bool(miner is not None and miner.committing),
            "miner_running": miner is not None,
            "address": format_address(self.address) if self.address is not None else None,
            "registered": self._registered(),
            "open_commitment": commitment,
            "pending": self._pending(),
            "txs": {kind: tx_hash.hex() for kind, tx_hash in self._sent.items()},
        }

    def _pending(self) -> str:
        """What `off` or `on` still has to do ("" when nothing)."""
        if self._off_task is not None and not self._off_task.done():
            return self._progress
        if self._in_flight("miner.register"):
            return "registration sent; mining from the first round that opens after it is in a block"
        if self._in_flight("miner.unregister"):
            return "unregistration sent, not in a block yet"
        return self._failure

    # ------------------------------------------------------------------ on / off

    async def turn_on(self) -> dict[str, Any]:
        async with self._lock:
            return await self._turn_on()

    async def turn_off(self) -> dict[str, Any]:
        async with self._lock:
            return self._turn_off()

    def close(self) -> None:
        """The node stops: forget a pending `off` (its round is left as the shutdown decided)."""
        if self._off_task is not None:
            self._off_task.cancel()

    async def _turn_on(self) -> dict[str, Any]:
        node = self.node
        if self.is_stopping():
            raise MiningSwitchError(409, "stopping", "the node is stopping")
        if node.account_key is None:
            raise MiningSwitchError(
                409, "no_account_key", "this node runs without its account key (keys/account_key.json)"
            )
        if node.chain is None or node.mempool is None:
            raise MiningSwitchError(503, "not_ready", "node is starting")
        if self._off_task is not None and not self._off_task.done():
            self._off_task.cancel()  # only its progress line: the round's duties go on either way
        self._failure = ""
        if node.miner is None:
            try:
                await node.start_miner()
            except Exception as exc:  # the node's one-line reason (no miner extra, bad dataset, ...)
                raise MiningSwitchError(409, "cannot_mine", str(exc)) from None
        node.miner.resume()
        needs_registration = not self._registered() or self._in_flight("miner.unregister")
        if needs_registration and not self._in_flight("miner.register"):
            self._send("miner.register", make_register_miner)
        log.info("miner on: %s", self._pending() or "registered; mining from the next round")
        return self.state()

    def _turn_off(self) -> dict[str, Any]:
        node = self.node
        if node.chain is None or node.mempool is None:
            raise MiningSwitchError(503, "not_ready", "node is starting")
        miner = node.miner
        if miner is not None:
            miner.pause()
        if self._off_task is None or self._off_task.done():
            self._failure = ""
            registering = self._registered() or self._in_flight("miner.register")
            if registering and not self._in_flight("miner.unregister"):
                try:
                    self._send("miner.unregister", make_unregister_miner)
                except MiningSwitchError as exc:
                    self._failure = f"unregistration failed: {exc}"
                    log.error("miner off: unregistration failed: %s", exc)
            duty = miner.open_duty() if miner is not None else None
            if duty is not None:
                self._progress = _finishing(duty)
                self._off_task = asyncio.get_running_loop().create_task(
                    self._finish_round(), name="miner-off"
                )
            log.info("miner off: %s", self._pending() or "not registered; nothing to send")
        return self.state()

    async def _finish_round(self) -> None:
        """Wait (for `state()`'s progress line) until the miner owes its round nothing more."""
        unsubscribe = self.node.subscribe(self._on_event)
        try:
            while (miner := self.node.miner) is not None and (duty := miner.open_duty()) is not None:
                self._progress = _finishing(duty)
                self._block.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._block.wait(), POLL_S)
        finally:
            unsubscribe()
        log.info("miner off: round duties done")

    def _on_event(self, event: NodeEvent) -> None:
        if isinstance(event, BlockCommitted):
            self._block.set()

    def _send(self, kind: str, build: Callable[[PrivateKey, str, int, int], SignedTx]) -> None:
        node = self.node
        key = node.account_key
        assert key is not None and node.mempool is not None
        nonce = node.mempool.pending_nonce(key.address)
        if nonce is None:
            raise MiningSwitchError(
                409, "no_account", f"{format_address(key.address)} has no account on chain"
            )
        stx = build(key, node.genesis.chain_id, nonce, node.params.min_fee)
        res = node.submit_tx(stx.raw)
        if res.error is not None:
            raise MiningSwitchError(409, res.error.code, f"{kind} rejected: {res.error}")
        self._sent[kind] = res.tx_hash
        log.info("submitted %s tx=%s nonce=%d", kind, res.tx_hash.hex()[:12], nonce)


def _finishing(duty: OpenDuty) -> str:
    return f"finishing round {duty.round} ({duty.due} due); unregistered from the next round"
