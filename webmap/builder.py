"""Build the ``/map`` page with Folium: the map shell, base maps, and our own script for the layers.

Nothing is inlined but a small configuration: every layer loads from the API as the map moves (GeoJSON by
bounding box, server-side heat cells, vector tiles), so the page stays small whatever the database holds.
Leaflet and its plugins come from the npm registry (webmap/package.json) and are served under /static by
the API: the page works on an intranet with no CDN. A GCJ-02 base map (AMap, Tencent) is not offered: our
layers are WGS-84/CGCS2000 and would sit ≈365 m off it; 天地图 uses CGCS2000, so it lines up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import folium
from branca.element import Element, Figure, MacroElement
from jinja2 import Template

from spatial.catalogue import CATEGORIES, ITEMS
from spatial.settings import MapSettings

WEBMAP = Path(__file__).resolve().parent
VENDOR_DIR = WEBMAP / "node_modules"
STATIC_DIR = WEBMAP / "static"

VENDOR_JS = (
    "leaflet.heat/dist/leaflet-heat.js",
    "leaflet.markercluster/dist/leaflet.markercluster.js",
)
VENDOR_CSS = ("leaflet.markercluster/dist/MarkerCluster.css", "leaflet.markercluster/dist/MarkerCluster.Default.css")

SUBDISTRICTS = (
    ("532601001", "开化街道", "Kaihua"),
    ("532601002", "卧龙街道", "Wolong"),
    ("532601003", "新平街道", "Xinping"),
)
INCIDENT_STATUSES = (
    ("collected", "信息收集", "Collected"),
    ("registered", "立案", "Registered"),
    ("dispatched", "派遣", "Dispatched"),
    ("handling", "处置", "Handling"),
    ("feedback", "反馈", "Feedback"),
    ("verified", "核查", "Verified"),
    ("closed", "结案", "Closed"),
    ("rejected", "不予立案", "Rejected"),
)
BUILDING_STATUSES = (
    ("discovered", "发现", "Discovered", "#9e9e9e"),
    ("investigated", "已查处", "Investigated", "#ff9800"),
    ("notice_served", "已下达通知", "Notice served", "#f4511e"),
    ("scheduled", "待拆除", "Scheduled", "#c62828"),
    ("demolished", "已拆除", "Demolished", "#2e7d32"),
    ("legalised", "已补办", "Legalised", "#1565c0"),
)


class _Start(MacroElement):
    """Starts our script once Folium has created the map (a child's script renders after its parent's)."""

    _template = Template(
        "{% macro script(this, kwargs) %}CityGrid.init({{ this._parent.get_name() }}, {{ this.config }});{% endmacro %}"
    )

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self._name = "CityGridStart"
        self.config = json.dumps(config, ensure_ascii=False)


def _vendor(path: str) -> str:
    return f"/static/vendor/{path}"


def map_config(settings: MapSettings, *, lang: str) -> dict[str, Any]:
    """Return what the page's script needs: endpoints, labels in both languages, filter choices."""
    return {
        "lang": lang,
        "centre": [settings.centre_lat, settings.centre_lon],
        "zoom": settings.zoom,
        "api": {
            "layers": "/v1/layers",
            "tiles": "/v1/tiles",
            "heat": "/v1/heat",
            "hotspots": "/v1/hotspots",
            "incidents": "/v1/map/incidents",
            "owner": "/v1/owner",
            "chiefs": "/v1/streets/chiefs",
            "kpi": "/v1/kpi",
            "whoami": "/v1/whoami",
        },
        "period": {"from": "2017-01-01", "to": "2017-06-30"},  # both days included: the first half of 2017
        "categories": [{"code": c.code, "zh": c.name_zh, "en": c.name_en} for c in CATEGORIES],
        "items": [{"code": i.code, "category": i.category_code, "zh": i.name_zh, "en": i.name_en} for i in ITEMS],
        "subdistricts": [{"code": c, "zh": zh, "en": en} for c, zh, en in SUBDISTRICTS],
        "statuses": [{"code": c, "zh": zh, "en": en} for c, zh, en in INCIDENT_STATUSES],
        "buildingStatuses": [
            {"code": c, "zh": zh, "en": en, "colour": colour} for c, zh, en, colour in BUILDING_STATUSES
        ],
    }


def build_map(settings: MapSettings, *, lang: str = "zh", basemap: str | None = None) -> str:
    """Return the HTML of the planners' map (Chinese first, ``lang="en"`` for English)."""
    chosen = basemap or settings.basemap
    m = folium.Map(
        location=[settings.centre_lat, settings.centre_lon],
        zoom_start=settings.zoom,
        tiles=None,
        control_scale=True,
        prefer_canvas=True,
    )
    # Folium's defaults point at CDNs; ours are served by the API (see module docstring). Folium writes these
    # in order, Leaflet first, so the plugins and our script find L defined.
    m.default_js = (
        [("leaflet", _vendor("leaflet/dist/leaflet.js"))]
        + [(path.split("/")[0], _vendor(path)) for path in VENDOR_JS]
        + [("citygrid", "/static/citygrid/citygrid.js")]
    )
    m.default_css = (
        [("leaflet_css", _vendor("leaflet/dist/leaflet.css"))]
        + [(path.split("/")[-1], _vendor(path)) for path in VENDOR_CSS]
        + [("citygrid_css", "/static/citygrid/citygrid.css")]
    )
    if chosen == "osm":
        folium.TileLayer(
            "OpenStreetMap", name="OpenStreetMap", attr="© OpenStreetMap contributors", max_zoom=19
        ).add_to(m)
    elif chosen == "tianditu":
        key = settings.tianditu_key
        for layer, name in (("vec", "天地图"), ("cva", "天地图注记")):
            folium.TileLayer(
                tiles=(
                    f"https://t{{s}}.tianditu.gov.cn/{layer}_w/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0"
                    f"&LAYER={layer}&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles&TILEMATRIX={{z}}&TILEROW={{y}}"
                    f"&TILECOL={{x}}&tk={key}"
                ),
                subdomains="01234567",
                attr="© 天地图 Tianditu",
                name=name,
                overlay=layer == "cva",
                max_zoom=18,
            ).add_to(m)
    root = m.get_root()
    assert isinstance(root, Figure)  # a Map's root is always its Figure
    root.header.add_child(Element('<link rel="icon" href="data:,">'))  # no /favicon.ico request
    root.header.add_child(Element(f"<title>{'城市管理综合执法地图' if lang == 'zh' else 'citygrid map'}</title>"))
    _Start(map_config(settings, lang=lang)).add_to(m)
    html: str = root.render()
    return html
