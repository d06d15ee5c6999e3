"""Fixtures of the multi-host tests: a WAN of network namespaces (tests/support/netns.py), skipped with
the reason where this machine cannot make one (not root, no `ip netns`, no nftables)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.netns import Network, WanSpec, create_network, require_netns


@pytest.fixture
def wan() -> Iterator[Callable[..., Network]]:
    """Factory: `wan(hosts, spec=WanSpec())`; every network made is torn down at teardown, pass or fail."""
    require_netns()
    made: list[Network] = []

    def factory(hosts: int, spec: WanSpec | None = None) -> Network:
        net = create_network(hosts, spec or WanSpec())
        made.append(net)
        return net

    try:
        yield factory
    finally:
        for net in made:
            net.close()
