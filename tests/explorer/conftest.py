"""Fixtures: the in-process node and RPC client the RPC tests use, for the explorer's JSON routes."""

from tests.support.rpc_fixtures import api, height_at_least, node

__all__ = ["api", "height_at_least", "node"]
