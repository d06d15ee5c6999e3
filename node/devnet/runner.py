"""`pocl-node devnet`: one command runs a local PoCL network of N validator-miners learning a dataset
together (DESIGN §7), follows it and reports.

    pocl-node devnet                       # 4 miners, 5 rounds on digits (cnn-digits), live table, report + plot
    pocl-node devnet --dataset mnist --data-dir DIR          # cnn-mnist, limits raised for its 4.8 MB txs
    pocl-node devnet --miners 4 --rounds 3 --adversary knn:1 --report report.json
    pocl-node devnet --json > report.json  # the report on stdout, progress on stderr

The chain's model is `--model`, else the dataset's (`ml.datasets`: digits -> cnn-digits, mnist -> cnn-mnist,
cifar10 -> pocl-cifar10, npz:PATH by its input shape); the genesis `pocl` section and the tx/block limits
follow from it (`params.devnet_chain`, `genesis.models.fit_model`). Generates a testnet
(`pocl.node.testnet`) with that genesis, enables mining in every home with its own data share (`--shard
i/N`, same partition in every miner), starts the nodes as separate `pocl-node run` processes
(`pocl.node.cluster`), sends a few demo transfers, and follows the chain over RPC (`follower`): height,
block interval, peers, round, phase, participants, winners with scores, and the global model's accuracy on
the held-out test split, which the devnet computes itself from `/models/global?format=npz` with canonical
inference (and the loss from its exact logits; `report` describes report.json, `plot` the annotated plot). It stops after `--rounds` rounds (or `--blocks`/`--duration`, or Ctrl-C), writes `report.json`,
`accuracy.png` and `logs/nodeN.log` into the output directory (`--out`, else a new temp dir; printed
first, then node0's web explorer URL), removes the node homes in it unless `--keep` (or a node died: its home and log stay), and stops
every process it started (also on Ctrl-C and errors). A node that dies is reported as one line: its last
error line and its log path.

On a terminal it shows a live table (`live_view`); without one (CI, tests) it prints plain progress lines.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pocl.node.cluster import ClusterError, LocalCluster, RpcError
from pocl.node.devnet.follower import Evaluator, Follower, Progress
from pocl.node.devnet.live_view import live_display, render
from pocl.node.devnet.network import (
    POLL_S,
    create_devnet,
    kill_leftovers,
    send_demo_transfers,
    stop_nodes,
    wait_until_up,
)
from pocl.node.devnet.params import DevnetError, DevnetParams, build_parser, parse_params
from pocl.node.devnet.plot import write_plot
from pocl.node.devnet.report import build_report, mining_seed, to_json_text, write_report
from pocl.node.explorer import explorer_url
from pocl.node.logging import QUIET_LIBRARIES

HEIGHT_LINE_EVERY = 10  # plain mode: a progress line every this many blocks

Say = Callable[..., None]


def run_devnet(params: DevnetParams) -> int:
    """Run the devnet to its stop condition; the exit status (0, 1 if a node died, 130 if interrupted)."""
    from pocl.node.miner import MinerError, check_miner_extra

    try:  # every node mines: without the miner extra each would die at start, so say it once, first
        for behaviour in sorted(set(params.behaviours)):
            check_miner_extra(params.dataset, behaviour)
    except MinerError as exc:
        raise DevnetError(str(exc)) from None
    try:
        evaluator = Evaluator(params.dataset, params.data_dir)
    except Exception as exc:
        raise DevnetError(f"dataset {params.dataset}: {exc}") from None
    model = check_model(params, evaluator.ds)
    out = params.out or Path(tempfile.mkdtemp(prefix="pocl-devnet-"))
    out.mkdir(parents=True, exist_ok=True)
    live = sys.stdout.isatty() and not params.plain and not params.json
    stream = sys.stderr if params.json else sys.stdout  # --json: stdout carries the report only

    def tell(*a: Any, **k: Any) -> None:
        print(*a, file=stream, **k)

    say: Say = tell if not live else (lambda *_a, **_k: None)
    homes = out / "net"
    tell(
        f"devnet: output in {out} (report, plot, logs; node homes "
        + ("kept: --keep)" if params.keep else "removed at the end unless --keep)"),
        flush=True,
    )
    say(
        f"devnet: {params.miners} miners ({', '.join(params.behaviours)}) on {params.dataset}, model {model}",
        flush=True,
    )
    # A devnet's keys are throwaway and unencrypted by design: say so once instead of once per key file.
    logging.getLogger("pocl.keystore").setLevel(logging.ERROR)
    for name in QUIET_LIBRARIES:  # the follower polls every node's RPC: no line per request
        logging.getLogger(name).setLevel(logging.WARNING)
    say("devnet: keys are UNENCRYPTED throwaway devnet keys (never reuse them)", flush=True)
    cluster = create_devnet(
        homes,
        params.miners,
        dataset=params.dataset,
        data_dir=params.data_dir,
        model=model,
        partition=params.partition,
        behaviours=params.behaviours,
        epochs=params.epochs,
        batch_size=params.batch_size,
    )
    # printed in live mode too: the web explorer is where the rounds can be looked at while they run
    tell(
        f"devnet: explorer {explorer_url(cluster.nodes[0].rpc_url)} (node0, while the devnet runs)",
        flush=True,
    )
    pids: list[int] = []
    stopped_by = "error"
    with contextlib.suppress(Exception):  # the miners' data as their nodes compute it (distributed metrics)
        evaluator.set_partition(params.miners, params.partition, mining_seed(cluster))
    follower = Follower(cluster, evaluator, params.behaviours)

    def on_term(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, on_term)
    old_int = signal.signal(signal.SIGINT, on_term)  # also when started with SIGINT ignored
    try:
        with live_display(follower.p, live) as display:
            follower.p.stage = "starting nodes"
            say("devnet: starting nodes", flush=True)
            cluster.start(wait=False)
            pids = [n.proc.pid for n in cluster.nodes if n.proc is not None]
            wait_until_up(cluster)
            follower.p.stage = "nodes up: waiting for the first round"
            with contextlib.suppress(Exception):
                send_demo_transfers(cluster)
            say("devnet: nodes up; following the chain (Ctrl-C stops)", flush=True)
            stopped_by = follow(params, cluster, follower, live, say, tell, display=display)
    except KeyboardInterrupt:
        stopped_by = "interrupted"
    finally:
        # a second Ctrl-C / SIGTERM must not interrupt the clean-up itself
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with contextlib.suppress(Exception):
            stop_nodes(cluster)
        kill_leftovers(pids)
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)
    p = follower.p
    report = build_report(
        params, cluster, p, stopped_by, pids, ds=evaluator.ds, model=model, shares=evaluator.shares
    )
    report_path = out / "report.json"
    write_report(report_path, report)
    if params.report_path is not None:
        write_report(params.report_path, report)
    plot_path = out / "accuracy.png"
    plotted = write_plot(plot_path, report)
    if live:
        from rich.console import Console

        Console().print(render(p))
    logs = collect_logs(cluster, out / "logs")
    # a node that died keeps its home: its log path was printed, and its data may explain why
    kept = params.keep or stopped_by == "node_died"
    if not kept:
        shutil.rmtree(homes, ignore_errors=True)
    final = report["final_accuracy"]
    tell(
        f"devnet: stopped ({stopped_by}) at height {p.height} after {len(p.rounds)} rounds; "
        f"genesis accuracy {_fmt(p.genesis_accuracy)} -> final {_fmt(final)} "
        f"(loss {_fmt(p.genesis_loss)} -> {_fmt(report['final_loss'])})"
    )
    plot_note = (
        f"plot {plot_path}" if plotted else "no plot (matplotlib is not installed: pip install 'pocl[miner]')"
    )
    tell(f"devnet: report {report_path}, {plot_note}, logs {logs}/node*.log")
    tell(
        f"devnet: node homes kept in {homes}"
        if kept
        else f"devnet: node homes removed (--keep keeps them); {out} holds the report, plot and logs"
    )
    if params.json:
        print(to_json_text(report), flush=True)
    if stopped_by == "node_died":
        return 1
    return 130 if stopped_by == "interrupted" else 0


def check_model(params: DevnetParams, ds: Any) -> str:
    """The chain's model: `--model`, else the dataset's; a DevnetError if the dataset does not fit it."""
    from pocl.ml.model.registry import get_model

    model = params.model or ds.model_name
    spec = get_model(model)
    if tuple(spec.input_shape) != tuple(ds.input_shape):
        raise DevnetError(
            f"model {model} takes inputs {list(spec.input_shape)} but dataset {params.dataset} has "
            f"{list(ds.input_shape)}" + ("" if params.model is None else f" (its model: {ds.model_name})")
        )
    if ds.num_classes > spec.num_classes:
        raise DevnetError(
            f"model {model} has {spec.num_classes} classes but dataset {params.dataset} has {ds.num_classes}"
        )
    return model


def collect_logs(cluster: LocalCluster, dest: Path) -> Path:
    """Copy each node's log to DEST/nodeN.log (they outlive the homes)."""
    dest.mkdir(parents=True, exist_ok=True)
    for node in cluster.nodes:
        with contextlib.suppress(OSError):
            shutil.copyfile(node.log_path, dest / f"node{node.index}.log")
    return dest


def _fmt(v: float | None) -> str:
    return f"{v:.4f}" if v is not None else "-"


def stop_reason(params: DevnetParams, p: Progress) -> str | None:
    """Which stop condition holds (`rounds`, `blocks`, `duration`), if any."""
    if params.rounds is not None and len(p.rounds) >= params.rounds:
        return "rounds"
    if params.blocks is not None and p.height >= params.blocks:
        return "blocks"
    if params.duration is not None and time.monotonic() - p.started >= params.duration:
        return "duration"
    return None


def follow(
    params: DevnetParams,
    cluster: LocalCluster,
    f: Follower,
    live: bool,
    say: Say,
    tell: Say | None = None,
    *,
    display: Any = None,
) -> str:
    """Poll the chain until a stop condition holds or a node dies; returns why it stopped. A node that died
    is told (`tell`, even under the live view) as one line: its last error line and its log path. `display`:
    a live view already shown (`live_display`), else one is opened here when `live`."""
    tell = tell or print
    ctx: Any = contextlib.nullcontext(display)
    if display is None and live:
        ctx = live_display(f.p, live)
    last_height_line = 0
    troubles: set[str] = set()
    with ctx as display:
        while True:
            dead = [n for n in cluster.nodes if not n.running]
            if dead:
                for n in dead:
                    tell(f"devnet: {n.failure()}", flush=True)
                return "node_died"
            try:
                for line in f.poll():
                    say(line, flush=True)
            except (OSError, RpcError, ValueError, KeyError, ClusterError) as exc:
                # a node busy or restarting: try again next poll (say so once per kind of trouble)
                text = f"{type(exc).__name__}: {exc}"
                if text not in troubles:
                    troubles.add(text)
                    say(f"devnet: poll failed ({text}); retrying", flush=True)
            if not live and f.p.height >= last_height_line + HEIGHT_LINE_EVERY:
                last_height_line = f.p.height
                say(
                    f"height {f.p.height} interval {f.p.interval_s:.2f}s peers {f.p.peers} "
                    f"round {f.p.round} {f.p.phase}",
                    flush=True,
                )
            if display is not None:
                display.refresh()
            reason = stop_reason(params, f.p)
            if reason is not None:
                return reason
            time.sleep(POLL_S)


def main(argv: list[str] | None = None) -> int:
    """`python -m pocl.node.devnet.runner [options]`: the same as `pocl-node devnet`."""
    try:
        return run_devnet(parse_params(build_parser().parse_args(argv)))
    except DevnetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
