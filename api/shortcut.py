"""ASGI middleware that answers one busy endpoint itself, past FastAPI's routing and request machinery.

Starlette's route matching over every route, the request object and FastAPI's handler machinery are per-request
Python work that an endpoint inside every request of its users does not need (``api.routers.owner``,
``api.routers.incidents``). Each endpoint keeps its route, which documents it and answers whatever its
shortcut leaves to it: every request under a root path, and whatever else the shortcut says.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class Shortcut:
    """Answer ``method`` ``path`` with ``answer``; pass every other request to the application unchanged."""

    method: str
    path: str

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer this shortcut's endpoint here; pass anything else to the application."""
        if (
            scope["type"] != "http"
            or scope["path"] != self.path
            or scope["method"] != self.method
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        await self.answer(scope, receive, send)

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a request to this shortcut's endpoint (or hand it to ``self.app``)."""
        raise NotImplementedError


async def send_json(send: Send, body: bytes, *, status: int = 200, headers: dict[str, str] | None = None) -> None:
    """Send ``body`` as a JSON response: the two ASGI messages a Response would send, without its set-up."""
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-length", str(len(body)).encode()), (b"content-type", b"application/json"),
        *((name.lower().encode(), value.encode()) for name, value in (headers or {}).items()),
    ]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})
