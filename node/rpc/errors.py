"""RPC errors: JSON `{"error": {"code": "...", "message": "..."}}` with a stable, documented code."""

from __future__ import annotations

from aiohttp import web


class ApiError(Exception):
    """Raised by a handler; the server's error middleware turns it into the JSON error response."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)
