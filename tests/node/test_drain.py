"""Stopping without walking away from a committed PoCL round: what a miner still owes (`miner_duty`),
what leaving costs, the drain-then-stop controller (`node.shutdown`), the mining switch
(`node.mining_switch`) and the loopback-only gate of `POST /miner/mining` (`node.rpc.local_only`)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request
from pocl.consensus.pocl.params import PoclParams
from pocl.consensus.pocl.records import PHASE_COMMIT, PHASE_PREDICT, PHASE_SHARD, PHASE_VOTE, RoundRecord
from pocl.ledger.evidence import slash_stake
from pocl.ledger.keys import PrivateKey
from pocl.ledger.params import ChainParams, GenesisAccount
from pocl.ledger.state import State
from pocl.node import mining_switch as switch_mod
from pocl.node.events import BlockCommitted
from pocl.node.miner_duty import (
    DUE_COMMIT_LANDING,
    DUE_PREDICT,
    DUE_SHARD,
    DUE_VOTE,
    OpenDuty,
    open_duty,
    withhold_cost,
)
from pocl.node.mining_switch import MiningSwitch, MiningSwitchError
from pocl.node.rpc.errors import ApiError
from pocl.node.rpc.local_only import require_local
from pocl.node.shutdown import ShutdownController

ME = b"\x01" * 20
OTHER = b"\x02" * 20
PARAMS = PoclParams()


def record(phase: int, **members: list[bytes]) -> RoundRecord:
    return dataclasses.replace(RoundRecord.open(5, 100, [ME, OTHER], b"\x00" * 32), phase=phase, **members)


# ---------------------------------------------------------------------------------------------- duties


@pytest.mark.parametrize(
    ("rec", "in_flight", "due"),
    [
        (None, False, None),
        (record(PHASE_COMMIT), False, None),  # not committed: free to go
        (record(PHASE_COMMIT), True, DUE_COMMIT_LANDING),  # its commit may still land
        (record(PHASE_COMMIT, committers=[ME]), False, DUE_SHARD),
        (record(PHASE_SHARD, committers=[ME]), False, DUE_SHARD),
        (record(PHASE_SHARD, committers=[ME], shard_owners=[ME]), False, DUE_PREDICT),
        (record(PHASE_PREDICT, committers=[ME], shard_owners=[ME]), False, DUE_PREDICT),
        (
            record(PHASE_PREDICT, committers=[ME], shard_owners=[ME], predictors=[ME], revealed=[ME]),
            False,
            DUE_VOTE,
        ),
        (
            record(PHASE_VOTE, committers=[ME], shard_owners=[ME], predictors=[ME], revealed=[ME]),
            False,
            DUE_VOTE,
        ),
        (
            record(
                PHASE_VOTE, committers=[ME], shard_owners=[ME], predictors=[ME], revealed=[ME], voters=[ME]
            ),
            False,
            None,
        ),
        (record(PHASE_SHARD, committers=[OTHER]), False, None),  # another miner's round
        (record(PHASE_PREDICT, committers=[ME]), False, None),  # shard refused: already a withholder
    ],
)
def test_open_duty_names_the_step_still_owed(
    rec: RoundRecord | None, in_flight: bool, due: str | None
) -> None:
    duty = open_duty(rec, ME, in_flight)
    assert (duty.due if duty else None) == due
    if duty is not None:
        assert duty.round == 5 and duty.phase == rec.phase_name  # type: ignore[union-attr]


def test_withhold_cost_is_what_finalization_would_burn() -> None:
    params = dataclasses.replace(PARAMS, slash_withhold_bps=250, jail_rounds=4)
    key = PrivateKey.from_seed_text("drain-cost")
    state = State.from_genesis(
        ChainParams(), [GenesisAccount(key.address, 0, stake=12_345, pubkey=key.pubkey)], "pocl-test"
    )
    acct = state.account_for_update(key.address)
    acct.unbonding = [[999, 50], [1, 60]]
    cost = withhold_cost(params, 7, acct.stake, [e[0] for e in acct.unbonding])
    assert cost.amount == slash_stake(state, key.address, 250)  # the same floors, bonded and unbonding
    assert (cost.slash_bps, cost.jail_rounds, cost.jailed_through_round) == (250, 4, 11)
    assert "250 bps" in cost.describe() and "4 rounds" in cost.describe()


# ---------------------------------------------------------------------------------------------- shutdown


class FakeMiner:
    def __init__(self, duty: OpenDuty | None) -> None:
        self.duty = duty
        self.committing = True

    def open_duty(self) -> OpenDuty | None:
        return self.duty

    def withhold_cost(self, round_: int) -> Any:
        return withhold_cost(PARAMS, round_, 10_000, [])

    def pause(self) -> None:
        self.committing = False

    def resume(self) -> None:
        self.committing = True


class FakeNode:
    def __init__(self, miner: FakeMiner | None) -> None:
        self.miner = miner
        self.listeners: list[Callable[[Any], None]] = []

    def subscribe(self, listener: Callable[[Any], None]) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)

    def block(self, height: int = 1) -> None:
        event = BlockCommitted(height, b"\x00" * 32, 0, 0, 0, 0.0, False, (), ())
        for listener in list(self.listeners):
            listener(event)


DUTY = OpenDuty(5, "predict", DUE_PREDICT)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_stop_without_an_open_commitment_is_immediate(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        for node in (FakeNode(None), FakeNode(FakeMiner(None))):
            ctl = ShutdownController(node, 60)  # type: ignore[arg-type]
            ctl.request_stop("SIGTERM")
            assert ctl.stopping.is_set()

    with caplog.at_level(logging.INFO, "pocl.node"):
        asyncio.run(main())
    assert "draining" not in caplog.text


def test_sigterm_with_an_open_commitment_drains_then_stops(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        miner = FakeMiner(DUTY)
        node = FakeNode(miner)
        ctl = ShutdownController(node, 60)  # type: ignore[arg-type]
        ctl.request_stop("SIGTERM")
        await _settle()
        assert not ctl.stopping.is_set() and not miner.committing and ctl.is_stopping()
        miner.duty = OpenDuty(5, "vote", DUE_VOTE)
        node.block(2)
        await _settle()
        assert not ctl.stopping.is_set()
        miner.duty = None  # its vote is in a block
        node.block(3)
        await asyncio.wait_for(ctl.stopping.wait(), 5)
        assert node.listeners == []

    with caplog.at_level(logging.INFO, "pocl.node"):
        asyncio.run(main())
    assert (
        "draining: finishing round 5 (phase predict) before stopping; send the signal again or run "
        "`pocl-node stop --force` to stop now (costs: slash 100 bps = 100 of its stake and jail for 3 rounds"
    ) in caplog.text
    assert "drained: round 5 duties done" in caplog.text


def test_a_second_signal_or_force_stops_at_once_and_says_what_it_costs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        ctl = ShutdownController(FakeNode(FakeMiner(DUTY)), 60)  # type: ignore[arg-type]
        ctl.request_stop("SIGTERM")
        await _settle()
        assert not ctl.stopping.is_set()
        ctl.request_stop("SIGINT")
        assert ctl.stopping.is_set()
        forced = ShutdownController(FakeNode(FakeMiner(DUTY)), 60)  # type: ignore[arg-type]
        forced.request_stop("SIGQUIT", force=True)
        assert forced.stopping.is_set()

    with caplog.at_level(logging.INFO, "pocl.node"):
        asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records if "stopping now" in r.getMessage()]
    assert len(lines) == 2
    for line in lines:
        assert "round 5 (phase predict) unfinished, predict still due: this costs slash 100 bps = 100" in line


def test_the_drain_gives_up_after_its_timeout(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        ctl = ShutdownController(FakeNode(FakeMiner(DUTY)), 0.2)  # type: ignore[arg-type]
        ctl.request_stop("SIGTERM")
        await asyncio.wait_for(ctl.stopping.wait(), 5)

    with caplog.at_level(logging.INFO, "pocl.node"):
        asyncio.run(main())
    assert "drain timeout after 0s" in caplog.text and "this costs slash 100 bps" in caplog.text


# ---------------------------------------------------------------------------------------------- switch


class SwitchFakeNode(FakeNode):
    def __init__(self, miner: FakeMiner | None, registered: bool) -> None:
        super().__init__(miner)
        self.account_key = PrivateKey.from_seed_text("drain-test")
        self.chain = mock.Mock()
        self.mempool = mock.MagicMock()
        self.mempool.pending_nonce.return_value = 3
        self.mempool.__contains__.side_effect = lambda h: h in self.pending
        self.pending: set[bytes] = set()
        self.genesis = mock.Mock(chain_id="pocl-test")
        self.params = ChainParams()
        self.sent: list[str] = []
        self.registered = registered
        self.started = 0

    def submit_tx(self, raw: bytes) -> Any:
        from pocl.ledger.tx import SignedTx

        stx = SignedTx.decode(raw)
        self.sent.append(stx.tx.kind)
        self.pending.add(stx.hash)
        return mock.Mock(error=None, tx_hash=stx.hash)

    async def start_miner(self) -> None:
        self.started += 1
        self.miner = FakeMiner(None)


@pytest.fixture
def chain_registration(monkeypatch: pytest.MonkeyPatch) -> Callable[[SwitchFakeNode], None]:
    def install(node: SwitchFakeNode) -> None:
        monkeypatch.setattr(switch_mod, "is_miner", lambda _state, _addr: node.registered)

    return install


def test_miner_off_unregisters_at_once_and_finishes_the_round(chain_registration: Callable[..., None]) -> None:
    """Unregistering mid-round leaves this round's duties in place (its eligible set is frozen) and keeps
    the miner out of the next round's set; waiting for the vote first would let it land after the next
    round opened, where an absent eligible miner holds COMMIT open to its full length."""

    async def main() -> None:
        miner = FakeMiner(DUTY)
        node = SwitchFakeNode(miner, registered=True)
        chain_registration(node)
        switch = MiningSwitch(node)  # type: ignore[arg-type]
        state = await switch.turn_off()
        assert not miner.committing and state["mining"] is False
        assert node.sent == ["miner.unregister"]
        assert state["open_commitment"]["due"] == DUE_PREDICT  # still owed, and the miner still does it
        assert state["open_commitment"]["cost_if_left"]["slash_bps"] == PARAMS.slash_withhold_bps
        assert "finishing round 5" in state["pending"]
        miner.duty = None
        node.block()
        for _ in range(50):
            if not switch.state()["pending"].startswith("finishing"):
                break
            await asyncio.sleep(0.05)
        assert switch.state()["pending"] == "unregistration sent, not in a block yet"
        assert node.sent == ["miner.unregister"]  # once

    asyncio.run(main())


def test_miner_on_starts_the_miner_and_registers_once(chain_registration: Callable[..., None]) -> None:
    async def main() -> None:
        node = SwitchFakeNode(None, registered=False)
        chain_registration(node)
        switch = MiningSwitch(node)  # type: ignore[arg-type]
        state = await switch.turn_on()
        assert node.started == 1 and node.miner.committing and state["mining"] is True
        assert node.sent == ["miner.register"] and state["pending"].startswith("registration sent")
        await switch.turn_on()  # registration still in flight: not sent twice
        assert node.sent == ["miner.register"] and node.started == 1
        node.registered = True
        node.pending.clear()
        await switch.turn_off()
        assert node.sent == ["miner.register", "miner.unregister"]
        await switch.turn_on()  # `on` while the unregistration is in flight registers again
        await _settle()
        assert node.sent == ["miner.register", "miner.unregister", "miner.register"]

    asyncio.run(main())


def test_miner_on_is_refused_while_the_node_stops_or_without_the_account_key(
    chain_registration: Callable[..., None],
) -> None:
    async def main() -> None:
        node = SwitchFakeNode(FakeMiner(None), registered=True)
        chain_registration(node)
        with pytest.raises(MiningSwitchError) as err:
            await MiningSwitch(node, is_stopping=lambda: True).turn_on()  # type: ignore[arg-type]
        assert err.value.code == "stopping"
        node.account_key = None  # type: ignore[assignment]
        with pytest.raises(MiningSwitchError) as err:
            await MiningSwitch(node).turn_on()  # type: ignore[arg-type]
        assert err.value.code == "no_account_key"

    asyncio.run(main())


def test_miner_on_reports_why_the_miner_cannot_start(chain_registration: Callable[..., None]) -> None:
    async def main() -> None:
        node = SwitchFakeNode(None, registered=False)
        chain_registration(node)

        async def no_extra() -> None:
            raise RuntimeError("mining needs the miner extra: pip install 'pocl[miner]'")

        node.start_miner = no_extra  # type: ignore[method-assign]
        with pytest.raises(MiningSwitchError) as err:
            await MiningSwitch(node).turn_on()  # type: ignore[arg-type]
        assert err.value.code == "cannot_mine" and "pocl[miner]" in str(err.value)
        assert node.sent == []

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------- local only


def _request(peer: str, headers: dict[str, str] | None = None) -> Any:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (peer, 5555) if name == "peername" else default
    )
    return make_mocked_request(
        "POST",
        "/miner/mining",
        headers={"Content-Type": "application/json", **(headers or {})},
        transport=transport,
    )


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.0.0.5", "::1"])
def test_local_only_accepts_loopback(peer: str) -> None:
    require_local(_request(peer))


@pytest.mark.parametrize(
    ("peer", "headers", "status"),
    [
        ("10.0.0.5", {}, 403),
        ("192.168.1.2", {}, 403),
        ("127.0.0.1", {"X-Forwarded-For": "203.0.113.9"}, 403),  # a local reverse proxy
        ("127.0.0.1", {"Origin": "https://evil.example"}, 403),  # a web page in a local browser
        ("127.0.0.1", {"Content-Type": "text/plain"}, 415),
    ],
)
def test_local_only_refuses_everything_else(peer: str, headers: dict[str, str], status: int) -> None:
    with pytest.raises(ApiError) as err:
        require_local(_request(peer, headers))
    assert err.value.status == status
