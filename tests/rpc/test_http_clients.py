"""The CLI's RPC client and the cluster's per-node client (httpx): answers, error answers and no answer
map to the same error types and one-line messages as before, against a scripted local HTTP server."""

from __future__ import annotations

import argparse
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from pocl.node.cluster import NodeProcess, RpcError, RpcUnreachable
from pocl.node.errors import UserError
from pocl.node.rpc.client import RpcClient, RpcRequestError, RpcUnavailable


class Scripted(BaseHTTPRequestHandler):
    """Answers by path: /ok echoes the request, /err a JSON error, /html a non-JSON 502, /text a 200 that is
    not JSON, /big a large body, /slow never answers until released."""

    release: ClassVar[threading.Event] = threading.Event()
    seen: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        Scripted.seen.append(
            {
                "method": self.command,
                "path": self.path,
                "body": body,
                "ctype": self.headers.get("Content-Type"),
            }
        )
        if self.path.startswith("/ok"):
            self._answer(200, json.dumps({"method": self.command, "path": self.path}).encode())
        elif self.path == "/err":
            self._answer(
                409, json.dumps({"error": {"code": "nonce_too_low", "message": "nonce 1 < 2"}}).encode()
            )
        elif self.path == "/html":
            self._answer(502, b"<html>bad gateway</html>", "text/html")
        elif self.path == "/text":
            self._answer(200, b"hello", "text/plain")
        elif self.path == "/txs":
            self._answer(202, json.dumps({"hash": "00", "new": True}).encode())
        elif self.path == "/big":
            self._answer(200, b"x" * 100_000, "application/octet-stream")
        elif self.path.startswith("/models/global?"):
            self._answer(200, b"NPZ:" + self.path.encode(), "application/octet-stream")
        elif self.path == "/slow":
            Scripted.release.wait(10)
            self._answer(200, b"{}")

    do_GET = _handle
    do_POST = _handle


@pytest.fixture
def server() -> Iterator[str]:
    Scripted.release.clear()
    Scripted.seen.clear()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        Scripted.release.set()
        srv.shutdown()
        srv.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_client_get_and_post_json(server: str) -> None:
    with RpcClient(server) as client:
        assert client.get("/ok/a") == {"method": "GET", "path": "/ok/a"}
        assert client.post("/ok/b", {"tx": "00"}) == {"method": "POST", "path": "/ok/b"}
    post = Scripted.seen[-1]
    assert json.loads(post["body"]) == {"tx": "00"} and post["ctype"] == "application/json"


def test_a_tx_is_sent_as_raw_bytes_so_a_large_model_fits_the_body_limit(server: str) -> None:
    """A cnn-mnist predict tx is 4.8 MB: as hex in JSON it would be 9.6 MB, over the node's 8 MiB limit."""
    raw = bytes(range(256)) * (5 * 4096)  # 5 MiB
    assert RpcClient(server).submit_tx(raw) == {"hash": "00", "new": True}
    post = Scripted.seen[-1]
    assert post["ctype"] == "application/octet-stream" and post["body"] == raw


def test_client_error_answer_keeps_its_code(server: str) -> None:
    with pytest.raises(RpcRequestError) as info:
        RpcClient(server).get("/err")
    assert (info.value.status, info.value.code, info.value.message) == (409, "nonce_too_low", "nonce 1 < 2")
    assert str(info.value) == "nonce 1 < 2 (nonce_too_low)"
    with pytest.raises(RpcRequestError) as info:
        RpcClient(server).get("/html")
    assert (info.value.status, info.value.code) == (502, "http_error")
    assert str(info.value) == "HTTP 502 Bad Gateway (http_error)"


def test_client_non_json_and_oversized_answers(server: str) -> None:
    with pytest.raises(RpcUnavailable, match="did not answer with JSON"):
        RpcClient(server).get("/text")
    assert RpcClient(server).request_bytes("GET", "/big", max_bytes=100_000) == b"x" * 100_000
    with pytest.raises(UserError, match="larger than 1000 bytes"):
        RpcClient(server).request_bytes("GET", "/big", max_bytes=1000)


def test_client_no_answer_is_one_friendly_line(server: str) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(RpcUnavailable) as info:
        RpcClient(url).status()
    assert (
        str(info.value) == f"cannot reach the node at {url}: Connection refused (is it running? see --node)"
    )
    with pytest.raises(RpcUnavailable) as info:
        RpcClient(server, timeout=0.2).get("/slow")
    assert str(info.value) == f"the node at {server} did not answer within 0.2s"


def test_model_export_downloads_over_the_client(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pocl.node.commands import model

    args = argparse.Namespace(node=server, rpc_timeout=5.0, home=None)
    assert model._via_rpc(args, "7") == b"NPZ:/models/global?round=7&format=npz"
    monkeypatch.setattr(model, "MAX_MODEL_BYTES", 10)
    with pytest.raises(UserError, match="larger than 10 bytes"):
        model._via_rpc(args, "7")


def node_at(url: str, tmp_path: Path) -> NodeProcess:
    return NodeProcess(SimpleNamespace(index=3, home=tmp_path, rpc_url=url))  # type: ignore[arg-type]


def test_cluster_node_rpc_answers_and_errors(server: str, tmp_path: Path) -> None:
    node = node_at(server, tmp_path)
    assert node.get("/ok") == {"method": "GET", "path": "/ok"}
    assert node.post("/ok", {"a": 1}) == {"method": "POST", "path": "/ok"}
    assert node.get_bytes("/big") == b"x" * 100_000
    with pytest.raises(RpcError) as info:
        node.get("/err")
    assert (info.value.status, info.value.code, info.value.message) == (409, "nonce_too_low", "nonce 1 < 2")
    with pytest.raises(RpcError) as info:
        node.get("/html")
    assert (info.value.status, info.value.code) == (502, "http_error")


def test_cluster_node_down_is_an_os_error(server: str, tmp_path: Path) -> None:
    """Callers poll with `except OSError` (and `status()` returns None) while a node is down or slow."""
    down = node_at(f"http://127.0.0.1:{closed_port()}", tmp_path)
    with pytest.raises(RpcUnreachable, match="node3 RPC /status: Connection refused") as info:
        down.get("/status")
    assert isinstance(info.value, OSError)
    assert down.status() is None and down.height() == -1
    with pytest.raises(TimeoutError):
        node_at(server, tmp_path).rpc("GET", "/slow", timeout=0.2)
