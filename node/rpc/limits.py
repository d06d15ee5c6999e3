"""What one RPC client may make the node hold: connections, time, and memory in request bodies.

The numbers come from `[rpc]` in config.toml (`RpcLimits.from_section`); `RpcCounters` is what the
guards (`connection_gate`, `body_guard`) count, exported as Prometheus metrics through
`RpcLimitsCollector` so an operator sees abuse as it happens instead of in a full log or an EMFILE.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

MIB = 1024 * 1024
DEFAULT_MAX_BODY_BYTES = 8 * MIB
DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_MAX_CONNECTIONS_PER_SOURCE = 128
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_BODY_TIMEOUT_S = 30.0
DEFAULT_KEEPALIVE_TIMEOUT_S = 15.0
DEFAULT_MAX_BUFFERED_BODY_BYTES = 4 * DEFAULT_MAX_BODY_BYTES
# After a refused or finished body, how long the server still reads and discards the rest of it, so the
# client can read its answer (413/503) instead of a connection reset; bounded time, no memory.
LINGER_S = 2.0

# The RPC may hold at most this share of the process's open-file limit: the rest is for P2P, LevelDB
# and the signing state, so no burst of clients can make the validator fail to persist what it signed.
RPC_FD_SHARE_DIVISOR = 4
MIN_RPC_CONNECTIONS = 8

# label values of the counters
REFUSED_TOTAL = "max_connections"
REFUSED_PER_SOURCE = "max_connections_per_source"
TIMEOUT_HEADER = "header"
TIMEOUT_BODY = "body"
BODY_TOO_LARGE = "too_large"
BODY_BUSY = "busy"


@dataclasses.dataclass(frozen=True)
class RpcLimits:
    """0 for a count or a timeout means "no limit" (as in the rest of the config)."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_connections_per_source: int = DEFAULT_MAX_CONNECTIONS_PER_SOURCE
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    keepalive_timeout_s: float = DEFAULT_KEEPALIVE_TIMEOUT_S
    max_buffered_body_bytes: int = DEFAULT_MAX_BUFFERED_BODY_BYTES

    @classmethod
    def from_section(cls, rpc: Any) -> RpcLimits:
        """From the `[rpc]` config section (`node.config.RPCSection`)."""
        return cls(**{f.name: getattr(rpc, f.name) for f in dataclasses.fields(cls)})

    def within_fd_limit(self, open_file_limit: int | None) -> RpcLimits:
        """`max_connections` lowered to a quarter of the open-file limit when it is above that (or
        unlimited); unchanged where the platform has no such limit."""
        if open_file_limit is None:
            return self
        cap = max(MIN_RPC_CONNECTIONS, open_file_limit // RPC_FD_SHARE_DIVISOR)
        if self.max_connections and self.max_connections <= cap:
            return self
        return dataclasses.replace(self, max_connections=cap)

    @property
    def body_budget_bytes(self) -> int:
        """Bytes of request bodies in flight at once: never below one largest body, or none could pass."""
        if self.max_buffered_body_bytes == 0:
            return 0
        return max(self.max_buffered_body_bytes, self.max_body_bytes)


@dataclasses.dataclass
class RpcCounters:
    """Live RPC abuse accounting of one server (read at scrape time)."""

    open_connections: int = 0
    body_bytes_in_flight: int = 0
    refused: Counter[str] = dataclasses.field(default_factory=Counter)  # by REFUSED_*
    timeouts: Counter[str] = dataclasses.field(default_factory=Counter)  # by TIMEOUT_*
    bodies_refused: Counter[str] = dataclasses.field(default_factory=Counter)  # by BODY_*


class RpcLimitsCollector(Collector):
    """`pocl_rpc_*` metrics of one RPC server, for `NodeMetrics.registry`."""

    def __init__(self, counters: RpcCounters) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Any]:
        c = self.counters
        yield GaugeMetricFamily("pocl_rpc_connections", "Open RPC connections", value=c.open_connections)
        yield GaugeMetricFamily(
            "pocl_rpc_body_bytes_in_flight",
            "Bytes reserved by RPC request bodies being read or handled",
            value=c.body_bytes_in_flight,
        )
        refused = CounterMetricFamily(
            "pocl_rpc_connections_refused",
            "RPC connections closed at accept because a connection cap was reached",
            labels=["reason"],
        )
        for reason in (REFUSED_TOTAL, REFUSED_PER_SOURCE):
            refused.add_metric([reason], c.refused[reason])
        yield refused
        timeouts = CounterMetricFamily(
            "pocl_rpc_timeouts",
            "RPC connections cut for sending headers or a body too slowly",
            labels=["kind"],
        )
        for kind in (TIMEOUT_HEADER, TIMEOUT_BODY):
            timeouts.add_metric([kind], c.timeouts[kind])
        yield timeouts
        bodies = CounterMetricFamily(
            "pocl_rpc_bodies_refused",
            "RPC request bodies refused before reading them (413 too large, 503 busy)",
            labels=["reason"],
        )
        for reason in (BODY_TOO_LARGE, BODY_BUSY):
            bodies.add_metric([reason], c.bodies_refused[reason])
        yield bodies
