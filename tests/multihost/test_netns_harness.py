"""The namespace WAN itself (tests/support/netns.py): hosts reach each other over the bridge on their own
addresses, TCP between hosts crosses the delaying relay (~100 ms round trip), the loss rule drops
about 1 % of arriving packets, and teardown leaves nothing behind."""

from __future__ import annotations

import statistics
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.support.netns import Network, WanSpec, namespaces, netns_network, require_netns

ECHO_PORT = 7000
ROUND_TRIPS = 15
UDP_PACKETS = 3000

# Echo server: prints READY, then for each connection the client's address, and echoes lines back.
ECHO_SERVER = """
import socket, sys
s = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("READY", flush=True)
while True:
    c, addr = s.accept()
    print(addr[0], flush=True)
    f = c.makefile("rwb", buffering=0)
    for line in f:
        f.write(line)
    c.close()
"""

# Client: one connection, N small round trips; prints each round trip in milliseconds.
RTT_CLIENT = """
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
f = c.makefile("rwb", buffering=0)
for i in range(int(sys.argv[3])):
    t = time.monotonic()
    f.write(b"ping %d\\n" % i)
    assert f.readline() == b"ping %d\\n" % i
    print((time.monotonic() - t) * 1000, flush=True)
"""

UDP_BLAST = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[3])):
    s.sendto(b"x" * 64, (sys.argv[1], int(sys.argv[2])))
    if i % 100 == 99:
        time.sleep(0.002)
"""


def start_echo(net: Network, index: int) -> subprocess.Popen[str]:
    host = net.hosts[index]
    proc = host.popen(
        [sys.executable, "-c", ECHO_SERVER, host.ip, ECHO_PORT], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
    return proc


def round_trips_ms(net: Network, client: int, server: int, count: int = ROUND_TRIPS) -> list[float]:
    out = net.hosts[client].run(
        [sys.executable, "-c", RTT_CLIENT, net.hosts[server].ip, ECHO_PORT, count], timeout=60
    )
    return [float(x) for x in out.stdout.split()]


@pytest.fixture
def two_hosts(wan: Callable[..., Network]) -> Network:
    return wan(2)


def test_hosts_reach_each_other_over_the_bridge_on_their_own_addresses(two_hosts: Network) -> None:
    net = two_hosts
    a, b = net.hosts
    assert a.ip != b.ip and not a.ip.startswith("127.") and a.ip.startswith("10.231.")
    addrs = a.run(["ip", "-o", "-4", "addr", "show", "dev", "eth0"]).stdout
    assert f"inet {a.ip}/24" in addrs
    assert "state UNKNOWN" in a.run(["ip", "-o", "link", "show", "lo"]).stdout  # loopback up
    echo = start_echo(net, 1)
    assert len(round_trips_ms(net, 0, 1, count=1)) == 1
    assert echo.stdout is not None
    assert echo.stdout.readline().strip() == a.ip  # the server sees the client's real address


def test_tcp_between_hosts_is_delayed_about_50ms_each_way(two_hosts: Network) -> None:
    net = two_hosts
    start_echo(net, 1)
    rtts = round_trips_ms(net, 0, 1)
    assert len(rtts) == ROUND_TRIPS
    assert net.relayed_counts() == {net.hosts[0].name: 1, net.hosts[1].name: 0}
    # two one-way delays of 50 ± 10 ms: 80..120 ms, plus scheduling on a busy machine
    assert min(rtts) >= 75, rtts
    assert 90 <= statistics.median(rtts) <= 300, rtts
    # the same path on one host's loopback is not delayed (only links between hosts are)
    start_echo_local = net.hosts[0].popen(
        [sys.executable, "-c", ECHO_SERVER, "127.0.0.1", ECHO_PORT], stdout=subprocess.PIPE, text=True
    )
    assert start_echo_local.stdout is not None and start_echo_local.stdout.readline().strip() == "READY"
    local = net.hosts[0].run([sys.executable, "-c", RTT_CLIENT, "127.0.0.1", ECHO_PORT, 5]).stdout.split()
    assert statistics.median(float(x) for x in local) < 40


def test_the_loss_rule_drops_about_one_percent_of_arriving_packets(two_hosts: Network) -> None:
    net = two_hosts
    assert net.drop_counts() == {h.name: 0 for h in net.hosts}
    rules = net.hosts[1].run(["nft", "list", "table", "ip", "pocl_wan"]).stdout
    assert "numgen random mod 100 < 1" in rules and "redirect to :" in rules
    net.hosts[0].run([sys.executable, "-c", UDP_BLAST, net.hosts[1].ip, 9, UDP_PACKETS], timeout=60)
    dropped = net.drop_counts()[net.hosts[1].name]
    assert 0.002 * UDP_PACKETS <= dropped <= 0.03 * UDP_PACKETS, dropped


def test_teardown_leaves_no_namespace_interface_or_process_behind() -> None:
    require_netns()
    root_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    with netns_network(2, WanSpec(seed=7)) as net:
        names = net.names
        assert set(names) <= set(namespaces())
        sleeper = net.hosts[0].popen(["sleep", "600"])
        assert len(net.hosts[0].run(["ip", "-o", "link"]).stdout.splitlines()) == 2  # lo, eth0
    assert not set(names) & set(namespaces())
    assert sleeper.poll() is not None
    after = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert len(after.splitlines()) == len(root_links.splitlines())


def test_teardown_happens_when_the_body_fails() -> None:
    require_netns()
    names: list[str] = []
    with pytest.raises(RuntimeError, match="boom"), netns_network(1) as net:
        names = net.names
        raise RuntimeError("boom")
    assert names and not set(names) & set(namespaces())
