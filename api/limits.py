"""Request-body limits, enforced before any of a body is parsed.

Files may be up to ``max_upload_mb``, anything else up to ``max_body_kb`` (settings
``CITYGRID_API_MAX_UPLOAD_MB`` / ``_MAX_BODY_KB``). Too much is a 413 that names the limit: refused from the
Content-Length header at once, or as soon as a chunked body passes it.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import PayloadTooLarge, error_body
from spatial.settings import ApiSettings

# Endpoints that take files; every other body is a small JSON document or form.
UPLOAD_PATHS = ("/v1/owner/batch", "/v1/incidents/bulk")
UPLOAD_PREFIXES = ("/v1/boundaries/",)


def _is_upload(path: str) -> bool:
    return path in UPLOAD_PATHS or path.startswith(UPLOAD_PREFIXES)


def _limit(path: str, settings: ApiSettings) -> tuple[int, str]:
    if _is_upload(path):
        return settings.max_upload_mb << 20, f"{settings.max_upload_mb} MB (CITYGRID_API_MAX_UPLOAD_MB)"
    return settings.max_body_kb << 10, f"{settings.max_body_kb} kB (CITYGRID_API_MAX_BODY_KB)"


def _message(path: str, what: str, limit: str) -> str:
    split = " split the file and send the parts" if _is_upload(path) else " send less"
    return f"the request body ({what}) is over the limit of {limit} for {path}:{split}"


class BodyLimit:
    """ASGI middleware enforcing the limits above."""

    def __init__(self, app: ASGIApp, settings: ApiSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a body over its limit; pass everything else through untouched."""
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit, described = _limit(path, self.settings)
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, _message(path, f"{int(declared):,} bytes", described))
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(_message(path, f"more than {limit:,} bytes", described))
            return message

        await self.app(scope, counted, send)


async def _refuse(send: Send, message: str) -> None:
    body = json.dumps(error_body(PayloadTooLarge.code, message), ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
