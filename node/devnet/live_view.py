"""The devnet's live terminal view: a status grid (height, round, phase, what the network is doing while it
starts, the newest global model's accuracy) over a table of finalized rounds, where adversarial miners carry
their behaviour next to their address."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from pocl.node.devnet.follower import Progress

TITLE = "devnet"
SHOWN_ROUNDS = 12


def status_cells(p: Progress) -> tuple[list[str], list[str]]:
    """The two rows of the status grid, as rich markup strings."""
    elapsed = time.monotonic() - p.started
    top = [
        f"height [bold]{p.height}[/bold]",
        f"interval {p.interval_s:.2f}s",
        f"peers {p.peers}",
        f"txs {p.txs}",
        f"elapsed {elapsed:.0f}s",
    ]
    rnd, acc = p.latest_accuracy
    which = "genesis" if rnd == 0 else f"round {rnd}"
    bottom = [
        f"round [bold]{p.round}[/bold]" if p.round else "round -",
        f"phase [bold]{p.phase}[/bold]",
        f"committed {p.committers}/{p.eligible}",
        f"global acc ({which}) " + (f"[bold]{acc:.4f}[/bold]" if acc is not None else "-"),
    ]
    if p.stage:
        bottom.append(f"[yellow]{p.stage}…[/yellow]")
    return top, bottom


def _label(p: Progress, address: str) -> str:
    """`Progress.label`, escaped: `[knn]` would otherwise read as rich markup."""
    from rich.markup import escape

    return escape(p.label(address))


def adversary_line(p: Progress) -> str:
    bad = [_label(p, a) for a, b in p.behaviours.items() if b != "honest"]
    return ("adversaries: " + ", ".join(bad)) if bad else ""


def round_rows(p: Progress) -> list[list[str]]:
    rows = []
    for r in p.rounds[-SHOWN_ROUNDS:]:
        wins = (
            "void: " + r.reason
            if r.void
            else ", ".join(f"{_label(p, w['address'])} {w['score_bps']}" for w in r.winners)
        )
        rows.append(
            [
                str(r.round),
                f"{r.participants}/{r.eligible}",
                wins,
                ", ".join(f"{_label(p, s['address'])} {s['kind']}" for s in r.slashes) or "-",
                f"{r.accuracy:.4f}" if r.accuracy is not None else "-",
                f"{r.loss:.4f}" if r.loss is not None else "-",
                f"{r.duration_s:.1f}s",
            ]
        )
    return rows


def render(p: Progress, title: str = TITLE) -> Any:
    from rich.console import Group
    from rich.table import Table

    top, bottom = status_cells(p)
    status = Table.grid(padding=(0, 2))
    width = max(len(top), len(bottom))
    status.add_row(f"[bold]{title}[/bold]", *top, *[""] * (width - len(top)))
    status.add_row("", *bottom, *[""] * (width - len(bottom)))
    parts: list[Any] = [status]
    adv = adversary_line(p)
    if adv:
        parts.append(f"[red]{adv}[/red]")
    table = Table(title="finalized rounds", expand=False)
    for col in ("round", "participants", "winners (score bps)", "slashed", "accuracy", "loss", "duration"):
        table.add_column(col)
    for row in round_rows(p):
        table.add_row(*row)
    parts.append(table)
    return Group(*parts)


def render_text(p: Progress, width: int = 160) -> str:
    """The view as plain text (what a terminal shows, without colours)."""
    import io

    from rich.console import Console

    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(render(p))
    return console.export_text()


def live_display(p: Progress, live: bool) -> contextlib.AbstractContextManager[Any]:
    """The live view of `p` while the context is open (re-rendered 4 times a second, so the elapsed time
    and start-up stage move on while the devnet waits); a context yielding None when not `live`."""
    if not live:
        return contextlib.nullcontext()
    from rich.live import Live

    return Live(get_renderable=lambda: render(p), refresh_per_second=4, transient=True)
