"""The devnet's live terminal view: a status grid (height, round, phase) over a table of finalized rounds."""

from __future__ import annotations

import time
from typing import Any

from pocl.node.devnet.follower import Progress, short

TITLE = "devnet"
SHOWN_ROUNDS = 12


def render(p: Progress, title: str = TITLE) -> Any:
    from rich.console import Group
    from rich.table import Table

    elapsed = time.monotonic() - p.started
    status = Table.grid(padding=(0, 2))
    status.add_row(
        f"[bold]{title}[/bold]",
        f"height [bold]{p.height}[/bold]",
        f"interval {p.interval_s:.2f}s",
        f"peers {p.peers}",
        f"txs {p.txs}",
        f"elapsed {elapsed:.0f}s",
    )
    status.add_row(
        "",
        f"round [bold]{p.round}[/bold]",
        f"phase [bold]{p.phase}[/bold]",
        f"committed {p.committers}/{p.eligible}",
        "genesis acc " + (f"{p.genesis_accuracy:.4f}" if p.genesis_accuracy is not None else "-"),
        "",
    )
    table = Table(title="finalized rounds", expand=False)
    for col in ("round", "participants", "winners (score bps)", "slashed", "accuracy", "duration"):
        table.add_column(col)
    for r in p.rounds[-SHOWN_ROUNDS:]:
        wins = (
            "void: " + r.reason
            if r.void
            else ", ".join(f"{short(w['address'])} {w['score_bps']}" for w in r.winners)
        )
        table.add_row(
            str(r.round),
            f"{r.participants}/{r.eligible}",
            wins,
            ", ".join(f"{short(s['address'])} {s['kind']}" for s in r.slashes) or "-",
            f"{r.accuracy:.4f}" if r.accuracy is not None else "-",
            f"{r.duration_s:.1f}s",
        )
    return Group(status, table)
