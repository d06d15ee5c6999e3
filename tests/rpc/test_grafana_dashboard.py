"""docs/grafana/pocl-dashboard.json is a Grafana dashboard model that imports against any Prometheus data
source, and every metric (and label) its PromQL queries name is exported by a running node, so no panel
says "no data" because of a typo or a renamed metric."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pytest
from pocl.node.node import Node

from tests.support.doc_commands import ROOT
from tests.support.metrics_scrape import metrics_text, sample_label_names

DASHBOARD = ROOT / "docs" / "grafana" / "pocl-dashboard.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
ROWS = ("consensus", "p2p", "mempool", "pocl", "rpc", "process")  # words the row titles must contain
SCRAPE_LABELS = {"instance", "job"}  # added by Prometheus, not by the node
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
IDENT = re.compile(r"(?<![\w:.])[A-Za-z_:][\w:]*")
SELECTOR = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)\s*\{([^}]*)\}")
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless"}
KEYWORDS |= {"offset", "inf", "nan"}


def _strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects, suffix included (`x_bucket`, `x_total`): every
    identifier outside label matchers, ranges and grouping clauses that is not a function, an
    aggregation or a keyword."""
    s = _strip_strings(expr)
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # ranges, subqueries ($__rate_interval)
    s = GROUPING.sub(" ", s)
    names = set()
    for m in IDENT.finditer(s):
        if not s[m.end() :].lstrip().startswith("(") and m.group().lower() not in KEYWORDS:
            names.add(m.group())
    return names


def selector_labels(expr: str) -> list[tuple[str, set[str]]]:
    """(metric, label names its matchers test) for every `metric{...}` of the expression."""
    return [
        (name, set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", body)))
        for name, body in SELECTOR.findall(_strip_strings(expr))
    ]


def grouping_labels(expr: str) -> set[str]:
    return {label.strip() for group in GROUPING.findall(expr) for label in group.split(",") if label.strip()}


@pytest.mark.parametrize(
    "expr,names",
    [
        (
            'histogram_quantile(0.95, sum by (le) (rate(a_seconds_bucket{instance=~"$instance"}[$__rate_interval])))',
            {"a_seconds_bucket"},
        ),
        ("sum(rate(a_sum[5m])) / sum(rate(a_count[5m])) * 60", {"a_sum", "a_count"}),
        ('max by (phase) (b_phase{instance=~"$x",phase!="rate(c)"}) == 1', {"b_phase"}),
        ("sum without (job) (c_total) or on (instance) d offset 5m > bool 1e3", {"c_total", "d"}),
        ("rate(process_cpu_seconds_total[1m])", {"process_cpu_seconds_total"}),
    ],
)
def test_metric_names_of_a_promql_expression(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those nested in collapsed rows included."""
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]


def test_the_dashboard_is_an_importable_grafana_model() -> None:
    d = load()
    assert d["schemaVersion"] >= 36 and d["uid"] and d["title"]  # Grafana 10/11 models
    assert d.get("id") is None  # import creates it
    (inp,) = d["__inputs"]
    assert inp["name"] == "DS_PROMETHEUS" and inp["type"] == "datasource" and inp["pluginId"] == "prometheus"
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    assert ds["current"]["value"] == "${DS_PROMETHEUS}"  # import's data-source choice becomes the default
    inst = variables["instance"]
    assert inst["type"] == "query" and inst["datasource"] == DS and inst["multi"] and inst["includeAll"]
    assert re.fullmatch(r"label_values\(\w+, instance\)", inst["definition"])

    all_panels = panels(d)
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids))
    rows = [p for p in all_panels if p["type"] == "row"]
    titles = " ".join(r["title"].lower().replace(" ", "") for r in rows)
    assert all(word in titles for word in ROWS), titles
    charts = [p for p in all_panels if p["type"] != "row"]
    assert len(charts) >= 20
    for p in charts:
        where = p["title"]
        assert p["datasource"] == DS, where
        assert p["targets"], where
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), where
        for t in p["targets"]:
            assert t["datasource"] == DS and t["expr"].strip(), where
            for name, labels in selector_labels(t["expr"]):
                assert "instance" in labels, f"{where}: {name} not filtered by $instance"
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, where
    # panels tile: no two overlap
    cells = Counter(
        (x, y)
        for p in charts
        for x in range(p["gridPos"]["x"], p["gridPos"]["x"] + p["gridPos"]["w"])
        for y in range(p["gridPos"]["y"], p["gridPos"]["y"] + p["gridPos"]["h"])
    )
    assert max(cells.values()) == 1


async def test_every_metric_the_dashboard_queries_exists_on_a_running_node(
    node: Node, height_at_least
) -> None:
    await height_at_least(3)  # block interval observed, validator set (missed blocks) known
    assert node.metrics is not None
    exported = sample_label_names(await metrics_text(node.metrics.port))
    d = load()
    queried: set[str] = set()
    for expr in exprs(d):
        names = metric_names(expr)
        assert names, f"no metric found in {expr!r}"
        missing = sorted(names - exported.keys())
        assert not missing, f"{expr!r} queries metrics the node does not export: {missing}"
        queried |= names
        for name, labels in selector_labels(expr):
            unknown = labels - exported[name] - SCRAPE_LABELS
            assert not unknown, f"{expr!r}: {name} has no label {sorted(unknown)}"
        known = set().union(*(exported[n] for n in names)) | SCRAPE_LABELS
        assert grouping_labels(expr) <= known, f"{expr!r} groups by labels its metrics lack"
    for v in d["templating"]["list"]:
        for name in re.findall(r"label_values\((\w+)", v.get("definition", "")):
            assert name in exported, f"variable {v['name']} reads {name}, which the node does not export"
    # and it charts every metric of the node's own (the process and Python collectors aside)
    families = {
        re.sub(r"_(?:total|bucket|sum|count|created)$", "", n) for n in exported if n.startswith("pocl_")
    }
    charted = {re.sub(r"_(?:total|bucket|sum|count)$", "", n) for n in queried}
    assert families <= charted, f"node metrics no panel shows: {sorted(families - charted)}"
    assert {"process_resident_memory_bytes", "process_open_fds", "process_cpu_seconds_total"} <= queried
