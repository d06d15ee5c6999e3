"""A ledger database whose schema version is newer than this pocl-node's (the store's meta key edited):
`run` refuses it with exit status 1 and one clear `error:` line naming the database and the version,
and deletes nothing; with the version put back, the node starts and catches up on the same chain."""

from __future__ import annotations

import subprocess
import sys

import plyvel
import pytest
from pocl.ledger.storage.store import K_HEAD, K_SCHEMA, SCHEMA_VERSION
from pocl.node.cluster import LocalCluster
from pocl.node.config import Config

from tests.perturb.kit import assert_same_chain, wait_recovered

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

NEWER = b"pocl-ledger/99"


def test_a_newer_schema_version_is_refused_cleanly(loop_cluster: LocalCluster) -> None:
    cluster = loop_cluster
    since = min(cluster.heights())
    victim = cluster.nodes[2]
    assert victim.stop() == 0
    db_path = victim.home / Config().storage.db_path
    db = plyvel.DB(str(db_path))
    try:
        height = db.get(K_HEAD)
        db.put(K_SCHEMA, NEWER, sync=True)
    finally:
        db.close()
    tables = {p.name for p in db_path.glob("*.ldb")}

    res = subprocess.run(
        [sys.executable, "-m", "pocl.node.cli", "run", "--home", str(victim.home)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 1, res.stdout[-2000:] + res.stderr[-2000:]
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, res.stderr[-2000:]
    assert str(db_path) in errors[0] and "pocl-ledger/99" in errors[0] and "not supported" in errors[0]
    assert "Traceback" not in res.stderr + res.stdout
    assert tables <= {p.name for p in db_path.glob("*.ldb")}  # no table file deleted

    db = plyvel.DB(str(db_path), create_if_missing=False)
    try:
        assert db.get(K_SCHEMA) == NEWER and db.get(K_HEAD) == height  # left as it was
        db.put(K_SCHEMA, SCHEMA_VERSION, sync=True)
    finally:
        db.close()
    victim.start()
    wait_recovered(cluster)
    assert_same_chain(cluster, since)
