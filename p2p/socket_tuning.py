"""TCP socket options the transport sets for throughput (Linux; best effort everywhere else)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any


def congestion_control_of(sock: Any) -> str | None:
    """The TCP congestion control algorithm of a socket (Linux), or None where it cannot be read."""
    if not hasattr(socket, "TCP_CONGESTION"):
        return None
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0").decode()
    except (OSError, UnicodeDecodeError):
        return None


def use_unpaced_congestion_control(sock: Any, algorithms: tuple[str, ...]) -> str | None:
    """On a loopback connection, replace a pacing congestion control (BBR, the default on many hosts)
    with the first of `algorithms` the kernel allows; returns the one set, or None.

    Pacing spreads packets out for a bottleneck link; on loopback (a devnet or cluster on one machine)
    there is none, and BBR's pacing timers cost the sender about as much CPU as encrypting the data
    (docs/benchmarks/p2p.md). Best effort: any failure keeps the default.
    """
    if not algorithms or sock is None:
        return None
    try:
        if not ipaddress.ip_address(sock.getpeername()[0]).is_loopback:
            return None
    except (OSError, ValueError, IndexError):
        return None
    current = congestion_control_of(sock)
    if current is None:
        return None
    if current in algorithms:
        return current
    for name in algorithms:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, name.encode())
            return name
        except OSError:
            continue
    return None
