"""Fixtures: an in-process single-validator node started in the test's event loop, and its RPC client."""

from tests.support.rpc_fixtures import api, height_at_least, node

__all__ = ["api", "height_at_least", "node"]
