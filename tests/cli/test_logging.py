"""Structured logging: one line per event, text and json formats, level specs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from pocl.node.logging import LogConfigError, get_logger, parse_level_spec, setup_logging


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in ("pocl", "pocl.p2p"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def test_text_lines(restore_root: None) -> None:
    out = io.StringIO()
    setup_logging("info", "text", out)
    log = get_logger("p2p").bind(peer="ab12")
    log.info("peer connected", addr="1.2.3.4:26656", note="two words\nsecond line", raw=b"\x01\x02")
    log.debug("hidden")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    line = lines[0]
    assert " INFO  p2p: peer connected peer=ab12 addr=1.2.3.4:26656 " in line
    assert 'note="two words\\nsecond line"' in line and "raw=0102" in line


def test_json_lines_and_exceptions(restore_root: None) -> None:
    out = io.StringIO()
    setup_logging("debug", "json", out)
    log = get_logger("consensus")
    log.debug("step", height=5, round=0)
    try:
        raise ValueError("boom\nmultiline")
    except ValueError:
        log.exception("handler failed", height=5)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(x) for x in lines)
    assert first["level"] == "debug" and first["logger"] == "consensus" and first["event"] == "step"
    assert first["height"] == 5 and first["ts"].endswith("Z")
    assert second["level"] == "error" and "ValueError: boom" in second["exc"]


def test_per_logger_levels(restore_root: None) -> None:
    out = io.StringIO()
    setup_logging("warning,p2p=debug", "text", out)
    get_logger("p2p").debug("p2p detail")
    get_logger("consensus").info("consensus chatter")
    logging.getLogger("pocl.keystore").warning("stdlib logger warning")
    text = out.getvalue()
    assert "p2p detail" in text and "consensus chatter" not in text and "stdlib logger warning" in text
    assert len(text.splitlines()) == 2


def test_level_spec_errors() -> None:
    assert parse_level_spec("info,p2p=debug") == (logging.INFO, {"pocl.p2p": logging.DEBUG})
    with pytest.raises(LogConfigError, match="unknown log level 'loud'"):
        parse_level_spec("loud")
    with pytest.raises(LogConfigError):
        setup_logging("info", "xml")
