"""What README.md and docs/*.md name matches the code: every error code they cite is a code the node
can return, and the operator guide's RPC table and the routes of the server are the same set."""

from __future__ import annotations

import ast
import re
import textwrap

from tests.support.doc_commands import ROOT, code_blocks
from tests.support.source_imports import PRODUCT_FOLDERS

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
OPERATORS = ROOT / "docs" / "operators.md"
SNAKE = r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+"
# "codes", or "error / rejection / stable code" (not "the training code")
CODE_WORDS = re.compile(r"\bcodes\b|\b(?:error|rejection|stable)\s+`?code\b", re.IGNORECASE)


def _prose(text: str) -> str:
    """The text without its fenced code blocks (their lines blanked, so paragraphs stay apart)."""
    lines = text.splitlines()
    for block in code_blocks(text):
        n = block.code.count("\n")
        lines[block.line - 1 : block.line + n + 1] = [""] * (n + 2)
    return "\n".join(lines)


def error_codes_named(text: str) -> set[str]:
    """Error codes a Markdown text cites: `"code": "x"` in JSON, `(x)` ending an `error: …` line of
    CLI output, the first column of a table whose header's first cell is `code`, and every backticked
    snake_case word of a sentence that speaks of `codes` or of an error, rejection or stable `code`."""
    codes = set(re.findall(r'"code":\s*"([a-z][a-z0-9_]*)"', text))
    codes |= set(re.findall(rf"^error: .*\(({SNAKE})\)\s*$", text, re.MULTILINE))
    prose = _prose(text)
    in_code_table = False
    for line in prose.splitlines():
        cells = (
            [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else []
        )
        if not cells:
            in_code_table = False
        elif cells[0].lower() == "code":
            in_code_table = True
        elif in_code_table:
            codes |= set(re.findall(rf"`({SNAKE})`", cells[0]))
    text_lines = "\n".join(ln for ln in prose.splitlines() if not ln.lstrip().startswith("|"))
    for paragraph in re.split(r"\n\s*\n|\n\s*[-*] ", text_lines):  # paragraphs and list items
        for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", paragraph):
            if CODE_WORDS.search(sentence):
                codes |= set(re.findall(rf"`({SNAKE})`", sentence))
    return codes


def product_string_constants() -> set[str]:
    """Every snake_case string literal of the installed packages: an error code the node can return is
    one of them (ledger/errors.py, the PoCL `E_*` constants, the RPC's `ApiError` codes, the mempool's)."""
    out: set[str] = set()
    for folder in PRODUCT_FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and re.fullmatch(r"[a-z][a-z0-9_]*", node.value)
                ):
                    out.add(node.value)
    return out


def test_every_error_code_the_docs_name_exists() -> None:
    known = product_string_constants()
    assert {"insufficient_balance", "nonce_too_low", "block_not_found", "pocl_wrong_phase"} <= known
    named_anywhere: set[str] = set()
    for doc in DOCS:
        named = error_codes_named(doc.read_text())
        named_anywhere |= named
        unknown = sorted(named - known)
        assert not unknown, f"{doc.relative_to(ROOT)} names error codes the code does not have: {unknown}"
    # the reader sees the docs' codes: the RPC's, the mempool's, the CLI example's, the PoCL table's
    assert {"bad_height", "insufficient_balance", "nonce_too_low", "pocl_wrong_phase"} <= named_anywhere


def test_the_reader_finds_codes_in_their_documented_forms() -> None:
    text = """
    Errors have a stable `code` (e.g. `block_not_found`, `insufficient_funds`). Not this
    `pending_nonce` here, nor the training code's `train_step`.

    | code | when |
    | --- | --- |
    | `pocl_bad_shape` / `pocl_bad_dtype` | shape |

    | key | default |
    | --- | --- |
    | `max_body_bytes` | 8 MiB |

    it receives `{"type": "error", "code": "lagged"}`

    ```
    $ pocl-node tx stake 1
    error: tx rejected: nonce 0 already used (nonce_too_low)
    ```
    """
    assert error_codes_named(textwrap.dedent(text)) == {
        "block_not_found",
        "insufficient_funds",
        "pocl_bad_shape",
        "pocl_bad_dtype",
        "lagged",
        "nonce_too_low",
    }


# ------------------------------------------------------------------------------------- RPC routes

ROUTE_TOKEN = re.compile(r"`(GET|POST|PUT|DELETE) (/[^`\s?\[]*)")


def server_routes() -> tuple[set[str], set[str]]:
    """`METHOD /path` of the node's HTTP servers: (every RPC `Route(...)`, core and extension routes;
    those and the routes added straight to an aiohttp router, such as the metrics server's)."""
    rpc: set[str] = set()
    other: set[str] = set()
    for path in (ROOT / "node").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or len(node.args) < 2:
                continue
            first, second = node.args[:2]
            if isinstance(node.func, ast.Name) and node.func.id == "Route":
                if isinstance(first, ast.Constant) and isinstance(second, ast.Constant):
                    rpc.add(f"{first.value} {second.value}")
            elif (
                isinstance(node.func, ast.Attribute)
                and node.func.attr in ("add_get", "add_post")
                and isinstance(first, ast.Constant)
            ):
                other.add(f"{node.func.attr.removeprefix('add_').upper()} {first.value}")
    return rpc, rpc | other


def routes_named(text: str) -> set[str]:
    """`GET /mempool?limit=N`, `GET /events[?from_height=N]`, `GET /rounds/{n}`: the method and path."""
    return {f"{m} {p}" for m, p in ROUTE_TOKEN.findall(text)}


def test_the_operator_guide_documents_every_route_and_only_routes_that_exist() -> None:
    rpc, every = server_routes()
    assert {"GET /status", "POST /txs", "POST /txs/batch", "GET /rounds/{n}"} <= rpc
    assert "GET /metrics" in every
    documented = routes_named(OPERATORS.read_text())
    missing = sorted(rpc - documented)
    assert not missing, f"docs/operators.md does not document these RPC routes: {missing}"
    for doc in DOCS:
        stale = sorted(routes_named(doc.read_text()) - every)
        assert not stale, f"{doc.relative_to(ROOT)} names routes the server does not have: {stale}"


def test_route_reader() -> None:
    text = (
        "| `GET /mempool?limit=N` | x | `GET /events[?from_height=N]`, `POST /txs` `GET /blocks/{height}` |"
    )
    assert routes_named(text) == {"GET /mempool", "GET /events", "POST /txs", "GET /blocks/{height}"}
