"""A small synchronous client of the node's RPC for the CLI (`tx`, `query`).

Failures are `UserError`s with one readable line: the node is down (`RpcUnavailable`) or it answered
with a JSON error (`RpcRequestError`, carrying the stable error code, e.g. `nonce_too_low`).
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from pocl.node.config import Config, parse_host_port
from pocl.node.errors import UserError
from pocl.node.home import NodeHome

DEFAULT_URL = "http://127.0.0.1:26657"
DEFAULT_TIMEOUT_S = 10.0
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


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


class RpcClient:
    def __init__(self, url: str = DEFAULT_URL, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.url = normalise_url(url)
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read(MAX_RESPONSE_BYTES)
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc) from None
        except urllib.error.URLError as exc:
            reason = (
                exc.reason.strerror if isinstance(exc.reason, OSError) and exc.reason.strerror else exc.reason
            )
            raise RpcUnavailable(
                f"cannot reach the node at {self.url}: {reason} (is it running? see --node)"
            ) from None
        except TimeoutError:
            raise RpcUnavailable(f"the node at {self.url} did not answer within {self.timeout:g}s") from None
        except (ConnectionError, OSError) as exc:
            raise RpcUnavailable(f"cannot reach the node at {self.url}: {exc}") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise RpcUnavailable(f"{self.url} did not answer with JSON (is it a pocl node?)") from None

    def _http_error(self, exc: urllib.error.HTTPError) -> UserError:
        try:
            err = json.loads(exc.read(65536))["error"]
            return RpcRequestError(exc.code, str(err["code"]), str(err["message"]))
        except (ValueError, KeyError, TypeError, OSError):
            return RpcRequestError(exc.code, "http_error", f"HTTP {exc.code} {exc.reason}")

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
        return self.post("/txs", {"tx": raw.hex()})


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
