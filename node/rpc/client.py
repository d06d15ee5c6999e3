"""A small synchronous client of the node's RPC for the CLI (`tx`, `query`).

Failures are `UserError`s with one readable line: the node is down (`RpcUnavailable`) or it answered
with a JSON error (`RpcRequestError`, carrying the stable error code, e.g. `nonce_too_low`).
HTTP is httpx's synchronous client (imported on first use, so `pocl-node --help` stays fast).
"""

from __future__ import annotations

import argparse
import json
import urllib.parse
from typing import TYPE_CHECKING, Any

from pocl.node.config import Config, parse_host_port
from pocl.node.errors import UserError
from pocl.node.home import NodeHome

if TYPE_CHECKING:
    import httpx

DEFAULT_URL = "http://127.0.0.1:26657"
DEFAULT_TIMEOUT_S = 10.0
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
DEFAULT_HINT = "is it running? see --node"


class RpcUnavailable(UserError):
    """The node could not be reached (not running, wrong --node, timeout)."""


class RpcRequestError(UserError):
    """The node answered with an error; `code` is its stable error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.status = status
        self.code = code
        self.message = message


def url_from_config(config: Config) -> str:
    """The RPC URL a local CLI should use for a home's `[rpc] listen_addr` (wildcards → loopback)."""
    host, port = parse_host_port(config.rpc.listen_addr)
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def normalise_url(url: str) -> str:
    """Accept `host:port` as well as `http://host:port`; drop a trailing slash."""
    if "://" not in url:
        url = "http://" + url
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UserError(f"invalid node URL {url!r} (expected http://HOST:PORT)")
    return url.rstrip("/")


def os_reason(exc: BaseException) -> str:
    """The OS's words for a transport failure ("Connection refused"), else the exception's text."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    return str(exc) or type(exc).__name__


def http_client(timeout: float, **kwargs: Any) -> httpx.Client:
    """An httpx client that opens a connection per request, as urllib did: nodes stop and restart (the
    CLI's `--wait` polls, the cluster kills nodes), and a pooled socket to a node that went away would
    fail the next request instead of reconnecting."""
    import httpx

    return httpx.Client(
        timeout=timeout, limits=httpx.Limits(max_keepalive_connections=0), follow_redirects=False, **kwargs
    )


class RpcClient:
    def __init__(
        self, url: str = DEFAULT_URL, timeout: float = DEFAULT_TIMEOUT_S, *, hint: str = DEFAULT_HINT
    ) -> None:
        self.url = normalise_url(url)
        self.timeout = timeout
        self.hint = hint  # what an unreachable node's error suggests (the option that named the URL)
        self._http: httpx.Client | None = None

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = http_client(self.timeout)
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, body: Any = None, raw_body: bytes | None = None) -> Any:
        raw = self.request_bytes(method, path, body, max_bytes=MAX_RESPONSE_BYTES, raw_body=raw_body)
        try:
            return json.loads(raw)
        except ValueError:
            raise RpcUnavailable(f"{self.url} did not answer with JSON (is it a pocl node?)") from None

    def request_bytes(
        self, method: str, path: str, body: Any = None, *, max_bytes: int, raw_body: bytes | None = None
    ) -> bytes:
        """The raw response body (at most `max_bytes`, else a `UserError`); errors as in `request`.
        `raw_body` is sent as `application/octet-stream` instead of a JSON `body`."""
        import httpx

        headers = {"Accept": "application/json"}
        content: bytes | None = None
        if raw_body is not None:
            content = raw_body
            headers["Content-Type"] = "application/octet-stream"
        elif body is not None:
            content = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            with self.http.stream(method, self.url + path, content=content, headers=headers) as resp:
                if resp.status_code >= 400:
                    raise self._http_error(resp.status_code, resp.reason_phrase, _read_capped(resp, 65536))
                raw = _read_capped(resp, max_bytes + 1)
        except httpx.TimeoutException:
            raise RpcUnavailable(f"the node at {self.url} did not answer within {self.timeout:g}s") from None
        except httpx.TransportError as exc:
            raise RpcUnavailable(
                f"cannot reach the node at {self.url}: {os_reason(exc)} ({self.hint})"
            ) from None
        if len(raw) > max_bytes:
            raise UserError(f"the answer from {self.url}{path} is larger than {max_bytes} bytes")
        return raw

    def _http_error(self, status: int, reason: str, body: bytes) -> UserError:
        try:
            err = json.loads(body)["error"]
            return RpcRequestError(status, str(err["code"]), str(err["message"]))
        except (ValueError, KeyError, TypeError):
            return RpcRequestError(status, "http_error", f"HTTP {status} {reason}")

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    # convenience wrappers

    def status(self) -> dict[str, Any]:
        return self.get("/status")

    def account(self, address: str) -> dict[str, Any]:
        return self.get(f"/accounts/{address}")

    def tx(self, tx_hash: str) -> dict[str, Any]:
        return self.get(f"/txs/{tx_hash}")

    def submit_tx(self, raw: bytes) -> dict[str, Any]:
        """Sent as raw bytes, not hex in JSON: a cnn-mnist predict tx (4.8 MB) fits the node's body limit
        only that way (hex doubles it)."""
        return self.request("POST", "/txs", raw_body=raw)


def _read_capped(resp: httpx.Response, limit: int) -> bytes:
    """Up to `limit` bytes of a streamed body (a node cannot make the CLI buffer gigabytes)."""
    chunks: list[bytes] = []
    size = 0
    for chunk in resp.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def add_node_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--node",
        metavar="URL",
        help="the node's RPC URL (default: from HOME/config.toml [rpc] listen_addr, else "
        + DEFAULT_URL
        + ")",
    )
    parser.add_argument(
        "--rpc-timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S", help="RPC request timeout (s)"
    )


def client_for(args: argparse.Namespace) -> RpcClient:
    """The client for `--node`, else the home's configured RPC address, else the default."""
    url = getattr(args, "node", None)
    if not url:
        home = NodeHome.at(getattr(args, "home", None))
        url = url_from_config(home.load_config()) if home.config_path.exists() else DEFAULT_URL
    timeout = getattr(args, "rpc_timeout", DEFAULT_TIMEOUT_S)
    if not timeout or timeout <= 0:
        raise UserError("--rpc-timeout must be positive")
    return RpcClient(url, timeout)
