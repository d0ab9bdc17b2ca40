"""Receive an uploaded file: its media type checked, its body streamed to a temporary file that is removed after."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Request

from api.errors import UnsupportedMediaType


@asynccontextmanager
async def uploaded(request: Request, suffixes: Mapping[str, str], *, name: str, what: str) -> AsyncIterator[Path]:
    """Yield the request body saved as ``name`` + the suffix its content type maps to in ``suffixes``.

    A content type not in ``suffixes`` is a 415 naming the ones that are; ``what`` says what the endpoint takes.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    suffix = suffixes.get(content_type)
    if suffix is None:
        raise UnsupportedMediaType(
            f"content-type {content_type or '(none)'} is not {what}: send {' or '.join(dict.fromkeys(suffixes))}"
        )
    with tempfile.TemporaryDirectory(prefix="citygrid-upload-") as folder:
        path = Path(folder) / f"{name}{suffix}"
        with path.open("wb") as sink:
            async for chunk in request.stream():
                sink.write(chunk)
        yield path
