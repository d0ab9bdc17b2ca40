"""``/v1/layers``: read-only GeoJSON of every public layer, with a bbox filter and paging."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.access import allow
from api.deps import SettingsDep
from api.errors import documented
from spatial.errors import InvalidInput, NotFound
from spatial.layers import BY_NAME, PUBLIC, layer_named
from spatial.layers.base import BBox, page

router = APIRouter(prefix="/v1/layers", tags=["layers"])


class LayerInfo(BaseModel):
    """A public layer: its name, labels and where to read it."""

    name: str
    label_zh: str
    label_en: str
    spatial: bool
    href: str


class GeoJSONResponse(JSONResponse):
    """A JSON response with the GeoJSON media type (RFC 7946)."""

    media_type = "application/geo+json"


@router.get(
    "", response_model=list[LayerInfo], summary="List the public layers", **allow("public", doing="list layers")
)
def list_layers(request: Request) -> list[LayerInfo]:
    """Return every public layer with its Chinese and English label."""
    return [
        LayerInfo(
            name=name,
            label_zh=BY_NAME[name].label_zh,
            label_en=BY_NAME[name].label_en,
            spatial=BY_NAME[name].spatial,
            href=str(request.url_for("layer_features", name=name)),
        )
        for name in PUBLIC
    ]


@router.get(
    "/{name}",
    name="layer_features",
    summary="One page of a layer as a GeoJSON FeatureCollection",
    **allow(
        "public",
        doing="read public layers",
        responses={
            200: {"content": {"application/geo+json": {}}},
            **documented(404, s404="no public layer of that name, or no such boundary generation"),
        },
    ),  # fmt: skip
)
async def layer_features(
    name: str,
    request: Request,
    settings: SettingsDep,
    bbox: Annotated[
        str | None,
        Query(description="west,south,east,north in WGS-84 degrees", examples=["104.22,23.35,104.27,23.39"]),
    ] = None,
    limit: Annotated[
        int | None, Query(ge=1, description="features per page (default and maximum are settings)")
    ] = None,
    offset: Annotated[int, Query(ge=0, description="features to skip")] = 0,
    generation: Annotated[int | None, Query(ge=1, description="boundary generation (default: the current one)")] = None,
) -> GeoJSONResponse:
    """Return features of ``name`` ordered by code, with ``numberMatched`` and a ``next`` link."""
    if name not in PUBLIC:
        raise NotFound(f"no public layer named {name!r}; public layers: {', '.join(PUBLIC)}")
    api = settings.api
    if limit is not None and limit > api.max_page_size:
        raise InvalidInput(f"limit {limit} is above the maximum page size {api.max_page_size}; page with offset")
    size = limit or api.default_page_size
    # In the event loop on the autocommit engine, like the owner lookup: a bbox's page takes a few ms, and in
    # the thread pool under load each of its round trips waited for the GIL (benchmarks/load.py: layer p50
    # ≈210 ms in the thread pool at 600 req/s).
    with request.app.state.read_engine.connect() as conn:
        result = page(
            conn, layer_named(name), bbox=BBox.parse(bbox) if bbox else None, limit=size, offset=offset,
            generation=generation,
        )  # fmt: skip
    body: dict[str, Any] = result.feature_collection()
    links = [{"rel": "self", "type": "application/geo+json", "href": str(request.url)}]
    if offset + size < result.number_matched:
        links.append(
            {"rel": "next", "type": "application/geo+json",
             "href": str(request.url.include_query_params(offset=offset + size, limit=size))}
        )  # fmt: skip
    body["links"] = links
    return GeoJSONResponse(body)
