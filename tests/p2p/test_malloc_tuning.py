"""glibc malloc thresholds for processes that move multi-MiB messages (run in child processes, since
`mallopt` changes the whole process)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent(
    """
    import resource, sys
    from pocl.p2p.malloc_tuning import keep_large_buffers_in_heap
    tuned = keep_large_buffers_in_heap() if sys.argv[1] == "tune" else False

    def one_message():  # the temporaries a 1 MiB message leaves behind, roughly
        a = bytearray(1024 * 1024 + 16)
        a[::4096] = b"\\x01" * len(range(0, len(a), 4096))
        b = bytes(a)
        del a
        c = bytearray(2 * 1024 * 1024)
        c[::4096] = b"\\x01" * 512
        del b, c

    for _ in range(3):
        one_message()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(200):
        one_message()
    print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def probe(mode: str, env: dict[str, str] | None = None) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    ).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_large_temporaries_stop_page_faulting_once_tuned():
    tuned, faults_tuned = probe("tune")
    if not tuned:
        pytest.skip("not glibc")
    _, faults_default = probe("default")
    assert faults_default > 200 * 100  # glibc defaults: fresh mmaps, hundreds of faults per message
    assert faults_tuned < 1000  # reused from the heap


def test_operator_environment_wins():
    tuned, _ = probe("tune", {"MALLOC_TRIM_THRESHOLD_": "1000000"})
    assert tuned is False
