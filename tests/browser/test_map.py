"""The planners' map in a real browser: layers, owner popup, filters, English, offline, screenshot."""

from __future__ import annotations

from urllib.parse import urlparse

from playwright.sync_api import Browser, ConsoleMessage, ElementHandle, Page, Request
from sqlalchemy import Engine, text

from tests.api.casekit import Keys
from tests.support import ROOT, buildings_in_tile

CENTRE = (104.244, 23.371)
PERIOD = "reported_at >= '2017-01-01T00:00+08' AND reported_at < '2017-07-01T00:00+08'"


def open_map(browser: Browser, live_server: str, problems: list[str], requests: list[str]) -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console: {message.text}")

    def on_request(request: Request) -> None:
        requests.append(request.url)

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("request", on_request)
    page.goto(live_server + "/map?basemap=none")
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    return page


def click_centre(page: Page) -> ElementHandle:
    """Click the city centre on the map and return the owner popup."""
    page.evaluate("() => { window.citygrid.map.closePopup(); }")
    x, y = page.evaluate(
        "([lat, lon]) => { const p = window.citygrid.map.latLngToContainerPoint([lat, lon]); return [p.x, p.y]; }",
        [CENTRE[1], CENTRE[0]],
    )
    box = page.locator("#" + page.evaluate("() => window.citygrid.map.getContainer().id")).bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + x, box["y"] + y)
    return page.wait_for_selector(".cg-owner[data-grid]", timeout=10_000)


def bounds(page: Page) -> tuple[float, float, float, float]:
    west, south, east, north = page.evaluate(
        "() => { const b = window.citygrid.map.getBounds();"
        " return [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map(v => Number(v.toFixed(6))); }"
    )
    return west, south, east, north


def test_the_map_draws_every_layer_and_answers_a_click(
    browser: Browser, live_server: str, engine: Engine, role_keys: Keys
) -> None:
    problems: list[str] = []
    requests: list[str] = []
    page = open_map(browser, live_server, problems, requests)
    state = page.evaluate("() => window.citygrid.state")
    west, south, east, north = bounds(page)
    envelope = f"ST_MakeEnvelope({west}, {south}, {east}, {north}, 4326)"
    with engine.connect() as conn:
        stalls = conn.execute(text(f"SELECT count(*) FROM stalls WHERE ST_Intersects(geom, {envelope})")).scalar_one()
        incidents = conn.execute(
            text(f"SELECT count(*) FROM incidents WHERE geom && {envelope} AND {PERIOD}")
        ).scalar_one()
        drawn = page.evaluate("() => window.citygrid.overlays.illegal_buildings.tileFeatures()")
        in_tiles = {key: buildings_in_tile(conn, *map(int, key.split("/"))) for key in drawn}
    hotspots = page.request.get(
        live_server + "/v1/hotspots?cell=h3:9&from=2017-01-01T00:00:00%2B08:00&to=2017-07-01T00:00:00%2B08:00"
    ).json()
    counts = state["counts"]
    assert {k: counts[k] for k in ("subdistricts", "grids", "streets", "rivers", "markets")} == {
        "subdistricts": 3, "grids": 193, "streets": 62, "rivers": 1, "markets": 21,
    }  # fmt: skip
    assert counts["stalls"] == stalls == 1620  # the whole city is in view
    assert drawn == in_tiles  # "z/x/y" of each tile in view → footprints drawn from it
    assert counts["illegal_buildings"] == sum(in_tiles.values()) > 0
    assert state["heatTotal"] == incidents
    assert counts["hotspots"] == sum(1 for f in hotspots["features"] if f["properties"]["gi_bin"] != 0)
    assert counts["hotspots"] > 0

    # Click the city centre: the owner chain from /v1/owner, without phone numbers for the public.
    popup = click_centre(page)
    assert popup.get_attribute("data-grid") == "532601001008006"
    assert "董凯" in popup.inner_text() and "开化街道城管执法中队" in popup.inner_text()
    assert "0876-" not in popup.inner_text()

    # Scores are not for the public: switching the choropleth on says whose key they need.
    page.locator(".leaflet-control-layers label", has_text="网格考核指标").locator("input").check()
    page.wait_for_function("() => window.citygrid.state.loaded.choropleth === true", timeout=15_000)
    assert page.evaluate("() => window.citygrid.state.counts.choropleth") == 0
    assert page.evaluate("() => window.citygrid.state.notices") == ["考核指标需要规划、指挥中心或管理员密钥"]

    # A planner signs in with a key: the page reloads, names the caller, and shows phone numbers.
    page.fill("#cg-key", role_keys.secrets["planner"])
    with page.expect_navigation():
        page.click("#cg-signin")
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    page.wait_for_function("() => document.getElementById('cg-caller').textContent.startsWith('规划：')")
    assert page.locator("#cg-caller").inner_text() == "规划：test planner"
    popup = click_centre(page)
    assert "董凯 0876-0000456" in popup.inner_text()

    # A filter changes the heat map without a reload: category 07 (河道管理) only.
    page.select_option("#cg-category", "07")
    page.wait_for_function(f"() => window.citygrid.state.heatTotal !== {incidents}", timeout=15_000)
    with engine.connect() as conn:
        river_cases = conn.execute(
            text(f"SELECT count(*) FROM incidents WHERE geom && {envelope} AND {PERIOD} AND item_code LIKE '07%'")
        ).scalar_one()
    page.wait_for_function(f"() => window.citygrid.state.heatTotal === {river_cases}", timeout=15_000)

    # The grid choropleth of a score from /v1/kpi (off by default): one shade per grid with a score.
    page.locator(".leaflet-control-layers label", has_text="网格考核指标").locator("input").check()
    page.wait_for_function("() => window.citygrid.state.loaded.choropleth === true", timeout=15_000)
    kpi = page.request.get(live_server + "/v1/kpi?period=2017Q2&by=grid", headers=role_keys.header("planner")).json()
    assert page.evaluate("() => window.citygrid.state.counts.choropleth") == len(kpi["rows"]) == 193

    # English.
    page.click("#cg-lang")
    assert page.locator(".leaflet-control-layers").inner_text().count("Grids") == 1
    assert "citygrid map" in page.locator(".cg-panel").inner_text()
    assert page.evaluate("() => document.documentElement.lang") == "en"

    output = ROOT / "test-output"
    output.mkdir(exist_ok=True)
    page.screenshot(path=str(output / "map.png"), full_page=True)

    # Zoomed in, the footprints drawn are those of the new zoom's tiles only.
    page.evaluate(
        "() => { window.citygrid.state.loaded.illegal_buildings = false;"
        f" window.citygrid.map.setView([{CENTRE[1]}, {CENTRE[0]}], 17); }}"
    )
    page.wait_for_function("() => window.citygrid.state.loaded.illegal_buildings === true", timeout=15_000)
    zoomed = page.evaluate("() => window.citygrid.overlays.illegal_buildings.tileFeatures()")
    with engine.connect() as conn:
        assert zoomed == {key: buildings_in_tile(conn, *map(int, key.split("/"))) for key in zoomed}
    assert {key.split("/")[0] for key in zoomed} == {"16"}
    assert page.evaluate("() => window.citygrid.state.counts.illegal_buildings") == sum(zoomed.values()) > 0
    page.close()

    assert problems == []
    origin = urlparse(live_server).netloc
    foreign = [url for url in requests if urlparse(url).netloc != origin and not url.startswith("data:")]
    assert foreign == []


def test_the_to_day_is_included_as_in_the_exports(
    browser: Browser, live_server: str, engine: Engine, role_keys: Keys
) -> None:
    problems: list[str] = []
    page = open_map(browser, live_server, problems, [])
    # The whole city is in view, so the heat map counts every incident of the period, as the export does.
    assert page.evaluate("() => window.citygrid.filters.to") == "2017-06-30"  # the first half of 2017, included
    page.fill("#cg-to", "2017-01-31")
    page.wait_for_function("() => window.citygrid.state.heatTotal === 834", timeout=15_000)
    totals = page.request.get(
        live_server + "/v1/exports/incidents/totals?reported_from=2017-01-01&reported_to=2017-01-31",
        headers=role_keys.header("planner"),
    ).json()
    with engine.connect() as conn:
        january = conn.execute(
            text("SELECT count(*) FROM incidents WHERE reported_at >= '2017-01-01T00:00+08'"
                 " AND reported_at < '2017-02-01T00:00+08'")
        ).scalar_one()  # fmt: skip
    assert totals["total"]["count"] == january == 834
    page.close()
    assert problems == []


def test_the_page_stays_small(browser: Browser, live_server: str) -> None:
    page = browser.new_page()
    response = page.goto(live_server + "/map?basemap=none&lang=en")
    assert response is not None and response.status == 200
    html = response.text()
    assert len(html.encode()) < 100_000
    assert "cdn" not in html.lower() and "https://" not in html
    page.close()
