"""A node's Prometheus `/metrics` as tests read it: the exposition text, its samples flattened to
`name{label=value,...}` → value, and the label names each sample name carries."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


async def metrics_text(port: int) -> str:
    """GET `/metrics` on loopback `port`; it must answer 200 in the Prometheus text format."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as resp,
    ):
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return await resp.text()


def flat_samples(text: str) -> dict[str, float]:
    """`name` or `name{k=v,...}` (labels sorted, values unquoted) → value, for every sample."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def sample_label_names(text: str) -> dict[str, set[str]]:
    """Sample name (with its `_total`/`_bucket`/`_sum`/`_count` suffix, as PromQL sees it) → the label
    names of its series."""
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out
