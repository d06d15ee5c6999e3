"""A full disk under one validator (its `data/` on a small tmpfs, filled to the last byte): it stops with
exit status 4 and one CRITICAL line naming the path and ENOSPC, the other three go on, and once space
returns (the tmpfs grown) and it is started again it catches up, ready, on the same chain, with every
transfer submitted meanwhile committed exactly once. Needs root (mount): skipped with the reason
otherwise."""

from __future__ import annotations

import errno
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pocl.node.cluster import LocalCluster, NodeProcess
from pocl.node.fatal import EXIT_FATAL

from tests.perturb.kit import TxLoad, assert_same_chain, wait_blocks, wait_recovered

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SMALL_TMPFS = "8m"
GROWN_TMPFS = "512m"  # above [node] min_free_disk_mb (100 MiB), so /ready is 200 again
EXIT_TIMEOUT_S = 60.0
CHUNK = 64 * 1024


def _mount(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def small_data_dir(loop_cluster: LocalCluster) -> Iterator[tuple[NodeProcess, Path]]:
    """node3's data/ moved onto a small tmpfs (node stopped meanwhile); moved back at the end."""
    victim = loop_cluster.nodes[3]
    data = victim.home / "data"
    saved = victim.home / "data.saved"
    victim.stop()
    shutil.copytree(data, saved)
    res = _mount(["-t", "tmpfs", "-o", f"size={SMALL_TMPFS},mode=0700", "tmpfs", str(data)])
    if res.returncode != 0:
        shutil.rmtree(saved)
        victim.start()
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip() or res.returncode}")
    try:
        shutil.copytree(saved, data, dirs_exist_ok=True)
        shutil.rmtree(saved)
        victim.start()
        yield victim, data
    finally:
        victim.kill()
        shutil.copytree(data, saved)
        subprocess.run(["umount", "-l", str(data)], check=False)
        shutil.rmtree(data)
        saved.rename(data)


def fill(path: Path) -> None:
    """Write until the filesystem says ENOSPC."""
    with (path / "filler").open("wb") as f:
        try:
            while True:
                f.write(b"\0" * CHUNK)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def test_disk_full_stops_one_validator_loudly_and_it_catches_up_after(
    loop_cluster: LocalCluster, small_data_dir: tuple[NodeProcess, Path]
) -> None:
    cluster = loop_cluster
    victim, data = small_data_dir
    others = [n for n in cluster.nodes if n is not victim]
    since = min(cluster.heights(others))
    cluster.wait_for_height(max(cluster.heights(others)), nodes=[victim], timeout=60)
    fill(data)
    assert victim.proc is not None
    assert victim.proc.wait(EXIT_TIMEOUT_S) == EXIT_FATAL, victim.log_tail(40)
    text = victim.log_path.read_text(errors="replace")
    critical = [ln for ln in text.splitlines() if "CRITICAL" in ln and "FATAL:" in ln]
    assert len(critical) == 1, victim.log_tail(40)
    assert "errno=ENOSPC" in critical[0] and str(data) in critical[0], critical[0]
    assert "Traceback" not in text

    load = TxLoad(cluster, "disk-full")  # the others go on without it
    load.submit(6, via=others)
    wait_blocks(cluster, 5, others, timeout=60)
    load.wait_committed(others)

    (data / "filler").unlink()  # space returns
    res = _mount(["-o", f"remount,size={GROWN_TMPFS}", str(data)])
    assert res.returncode == 0, res.stderr
    victim.start()
    wait_recovered(cluster)
    load.wait_committed(cluster.nodes)
    assert_same_chain(cluster, since)
