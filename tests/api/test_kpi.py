"""/v1/kpi and /v1/kpi/pk: the seed's hotline figures, every unit's scores, the quarterly PK, CSV downloads."""

from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient

from spatial.kpi import COUNTS


def test_the_hotline_half_year_gives_the_seeds_figures(planner_client: TestClient) -> None:
    result = planner_client.get("/v1/kpi", params={"period": "2017", "source": "hotline"}).json()
    total = result["total"]
    assert (total["reports"], total["closed"], total["closure_rate"], total["satisfaction_rate"]) == (
        3694, 2900, 78.5, 86.0,
    )  # fmt: skip
    assert total == {
        "reports": 3694, "rejected": 0, "due": 3694, "deferred": 0, "closed": 2900, "closed_on_time": 2543,
        "reworked": 210, "evaluated": 2900, "satisfied": 2494, "overdue": 794, "closure_rate": 78.5,
        "on_time_rate": 68.8, "rework_rate": 5.7, "satisfaction_rate": 86.0, "mean_handling_hours": 58.2,
    }  # fmt: skip
    assert result["sources"] == ["hotline"]
    assert result["period"] == {"label": "2017", "from": "2017-01-01T00:00:00+08:00", "to": "2018-01-01T00:00:00+08:00"}
    rows = {r["code"]: r for r in result["rows"]}
    assert [(r["code"], r["name"]) for r in result["rows"]] == [
        ("532601001", "开化街道"), ("532601002", "卧龙街道"), ("532601003", "新平街道"),
    ]  # fmt: skip
    assert [(r["reports"], r["closed"], r["closed_on_time"], r["reworked"], r["satisfied"]) for r in rows.values()] == [
        (1701, 1316, 1150, 98, 1132), (1185, 937, 811, 66, 802), (808, 647, 582, 46, 560),
    ]  # fmt: skip
    rates = [(r["closure_rate"], r["on_time_rate"], r["rework_rate"], r["satisfaction_rate"]) for r in rows.values()]
    assert rates == [
        (77.4, 67.6, 5.8, 86.0), (79.1, 68.4, 5.6, 85.6), (80.1, 72.0, 5.7, 86.6),
    ]  # fmt: skip
    assert [r["mean_handling_hours"] for r in rows.values()] == [58.2, 62.9, 51.5]


def test_every_source_counts_by_default_and_units_add_up(planner_client: TestClient) -> None:
    by_community = planner_client.get("/v1/kpi", params={"period": "2017Q2", "by": "community"}).json()
    assert len(by_community["rows"]) == 26
    assert by_community["sources"] == ["hotline", "letter", "patrol", "grid_member", "media", "open311"]
    total = by_community["total"]
    assert (total["reports"], total["closed"], total["closure_rate"], total["satisfaction_rate"]) == (
        2380,
        1395,
        58.6,
        86.4,
    )
    for name in COUNTS:
        assert sum(r[name] for r in by_community["rows"]) == total[name], name
    dongfeng = by_community["rows"][0]
    assert (dongfeng["code"], dongfeng["name"], dongfeng["reports"], dongfeng["closure_rate"]) == (
        "532601001001", "东风社区", 110, 53.6,
    )  # fmt: skip

    by_grid = planner_client.get(
        "/v1/kpi", params={"period": "2017-05", "by": "grid", "source": ["hotline", "letter"]}
    ).json()
    assert len(by_grid["rows"]) == 193
    assert (by_grid["total"]["reports"], by_grid["total"]["closed"], by_grid["total"]["on_time_rate"]) == (
        809,
        540,
        58.3,
    )
    assert sum(r["reports"] for r in by_grid["rows"]) == 809
    empty = [r for r in by_grid["rows"] if r["reports"] == 0]
    assert all(r["closure_rate"] is None and r["mean_handling_hours"] is None for r in empty)


def test_the_quarterly_pk_ranks_the_three_subdistricts_on_four_themes(planner_client: TestClient) -> None:
    pk = planner_client.get("/v1/kpi/pk", params={"quarter": "2017Q2"}).json()
    ranks = {t["theme"]: [(e["code"], e["rank"], e["score"], e["reports"]) for e in t["ranking"]] for t in pk["themes"]}
    assert ranks == {
        "demolition": [("532601002", 1, 61.3, 63), ("532601001", 2, 60.6, 71), ("532601003", 3, 60.0, 28)],
        "outdoor_advertising": [("532601002", 1, 66.1, 102), ("532601001", 2, 64.4, 135), ("532601003", 3, 52.5, 57)],
        "sanitation": [("532601003", 1, 68.0, 165), ("532601001", 2, 64.1, 199), ("532601002", 3, 56.4, 182)],
        "business_premises": [("532601003", 1, 62.7, 108), ("532601002", 2, 61.7, 201), ("532601001", 3, 59.6, 327)],
    }
    first = pk["themes"][0]["ranking"][0]
    # the numbers behind the rank: 40 % closure + 40 % on time + 20 % satisfaction
    assert (first["closure_rate"], first["on_time_rate"], first["satisfaction_rate"]) == (54.0, 49.2, 100.0)
    assert round(0.4 * 54.0 + 0.4 * 49.2 + 0.2 * 100.0, 1) == first["score"] == 61.3
    assert first["illegal_buildings"] == {"investigated": 34, "demolished": 37, "demolished_m2": 32249.8}
    assert [t["label_zh"] for t in pk["themes"]] == ["违法建设拆除", "户外广告", "环境卫生", "经营场所"]


def test_scores_download_as_csv(planner_client: TestClient) -> None:
    response = planner_client.get("/v1/kpi", params={"period": "2017", "source": "hotline", "format": "csv"})
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="kpi-2017-subdistrict.csv"' in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert [r["subdistrict_code"] for r in rows] == ["532601001", "532601002", "532601003", "total"]
    assert (rows[-1]["reports"], rows[-1]["closed"], rows[-1]["closure_rate"], rows[-1]["satisfaction_rate"]) == (
        "3694", "2900", "78.5", "86.0",
    )  # fmt: skip
    accept = planner_client.get("/v1/kpi", params={"period": "2017"}, headers={"Accept": "text/csv"})
    assert accept.headers["content-type"].startswith("text/csv")
    pk = planner_client.get("/v1/kpi/pk", params={"quarter": "2017Q2", "format": "csv"})
    pk_rows = list(csv.DictReader(io.StringIO(pk.content.decode("utf-8-sig"))))
    assert len(pk_rows) == 12
    assert (pk_rows[0]["theme"], pk_rows[0]["rank"], pk_rows[0]["subdistrict_code"], pk_rows[0]["score"]) == (
        "demolition", "1", "532601002", "61.3",
    )  # fmt: skip


def test_bad_periods_and_units_say_what_to_give(planner_client: TestClient) -> None:
    bad = planner_client.get("/v1/kpi", params={"period": "last spring"})
    assert bad.status_code == 422 and "2017Q2" in bad.json()["message"]
    assert planner_client.get("/v1/kpi", params={"period": "2017", "by": "street"}).status_code == 422
    assert planner_client.get("/v1/kpi", params={"period": "2017", "source": "radio"}).status_code == 422
    not_quarter = planner_client.get("/v1/kpi/pk", params={"quarter": "2017H1"})
    assert not_quarter.status_code == 422 and "not a quarter" in not_quarter.json()["message"]
    for period in ("9999", "9999Q4", "9999-12", "9999H2", "0000"):
        slip = planner_client.get("/v1/kpi", params={"period": period})
        assert slip.status_code == 422, (period, slip.text)
        assert slip.json()["message"] == (
            f"period {period!r} is in the year {int(period[:4])}: give a year from 1900 to 2100"
        )
    assert planner_client.get("/v1/kpi/pk", params={"quarter": "9999Q4"}).status_code == 422
    assert planner_client.get("/v1/kpi", params={"period": "2100Q4"}).status_code == 200
