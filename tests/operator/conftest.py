"""Operator-surface tests reuse the multi-process cluster fixture of the integration tests."""

from __future__ import annotations

from tests.integration.conftest import (  # noqa: F401 - pytest fixtures/hooks by import
    FAST_PARAMS,
    make_cluster,
    pytest_runtest_makereport,
)
