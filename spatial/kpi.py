"""The scores by which the city ranks its subdistricts (DESIGN.md "Cases and scores").

For the cases reported in a period (by ``reported_at``, Beijing time), per subdistrict, community or grid:

- reports (受理数): every case reported in the period; rejected (不予立案) ones are not cases to close;
- due (应结案数) = reports − rejected; deferred (缓办) = cases deferred and not closed;
- 结案率 closure rate = closed / (due − deferred);
- 按期结案率 on-time rate = closed by their due time / (due − deferred);
- 返工率 rework rate = cases sent back at least once by a failed check / (due − deferred);
- satisfaction rate (满意率) = (satisfied + basically satisfied) / cases with an answer;
- mean handling time = mean hours from report to closure over the closed cases;
- overdue = open cases past their due time at the moment asked (default now).

Rates are percentages with one decimal, None when their denominator is 0. Cases of every source count
unless ``sources`` narrows them: the seed's hotline figures (3,694 / 2,900 / 78.5 % / 86 %) are
``sources=("hotline",)``.

The quarterly PK (季度PK) ranks the three subdistricts on four themes — illegal-building demolition, outdoor
advertising, sanitation, business premises — each theme being the cases of the catalogue categories tied
to it. A theme's score is 40 % closure rate + 40 % on-time rate + 20 % satisfaction rate (out of 100): the
city's weighting, closure and timeliness first, the public's view after. Ties go to the higher closure rate,
then to the lower code.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from spatial.errors import InvalidInput
from spatial.layers.incidents import SOURCES

CST = timezone(timedelta(hours=8))
UNITS = {
    "subdistrict": ("subdistrict_code", "subdistricts"),
    "community": ("community_code", "communities"),
    "grid": ("grid_code", "grids"),
}
PK_THEMES = {
    "demolition": "违法建设拆除",
    "outdoor_advertising": "户外广告",
    "sanitation": "环境卫生",
    "business_premises": "经营场所",
}
PK_WEIGHTS = {"closure_rate": 0.4, "on_time_rate": 0.4, "satisfaction_rate": 0.2}
COUNTS = (
    "reports", "rejected", "due", "deferred", "closed", "closed_on_time", "reworked", "evaluated", "satisfied",
    "overdue",
)  # fmt: skip
RATES = ("closure_rate", "on_time_rate", "rework_rate", "satisfaction_rate", "mean_handling_hours")


@dataclass(frozen=True)
class Period:
    """A reporting period in Beijing time: [start, end)."""

    label: str
    start: datetime
    end: datetime

    def as_dict(self) -> dict[str, str]:
        """Return the period as JSON."""
        return {"label": self.label, "from": self.start.isoformat(), "to": self.end.isoformat()}


# The years a period may lie in (a year such as 9999 or 0000 is a typing slip, and its end no date)
FIRST_YEAR, LAST_YEAR = 1900, 2100


def parse_period(label: str) -> Period:
    """Parse 2017, 2017H1, 2017Q2 or 2017-05 into a Period; raise InvalidInput with examples otherwise."""
    text_ = label.strip().upper()
    if match := re.fullmatch(r"(\d{4})", text_):
        year = _checked_year(label, int(match.group(1)))
        return Period(text_, datetime(year, 1, 1, tzinfo=CST), datetime(year + 1, 1, 1, tzinfo=CST))
    if match := re.fullmatch(r"(\d{4})H([12])", text_):
        year, half = _checked_year(label, int(match.group(1))), int(match.group(2))
        return Period(text_, _month_start(year, 6 * half - 5), _month_start(year, 6 * half + 1))
    if match := re.fullmatch(r"(\d{4})Q([1-4])", text_):
        year, quarter = _checked_year(label, int(match.group(1))), int(match.group(2))
        return Period(text_, _month_start(year, 3 * quarter - 2), _month_start(year, 3 * quarter + 1))
    if match := re.fullmatch(r"(\d{4})-(\d{2})", text_):
        year, month = _checked_year(label, int(match.group(1))), int(match.group(2))
        if 1 <= month <= 12:
            return Period(text_, _month_start(year, month), _month_start(year, month + 1))
    raise InvalidInput(
        f"period {label!r} is not understood: give a year (2017), half (2017H1), quarter (2017Q2) or month (2017-05)"
    )


def _month_start(year: int, month: int) -> datetime:
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    return datetime(year, month, 1, tzinfo=CST)


def _checked_year(label: str, year: int) -> int:
    """Return ``year`` if a period in it can be counted (its end too); raise InvalidInput otherwise."""
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise InvalidInput(f"period {label!r} is in the year {year}: give a year from {FIRST_YEAR} to {LAST_YEAR}")
    return year


def parse_quarter(label: str) -> Period:
    """Parse a quarter such as 2017Q2 (the PK is quarterly)."""
    period = parse_period(label)
    if "Q" not in period.label:
        raise InvalidInput(f"quarter {label!r} is not a quarter: give e.g. 2017Q2")
    return period


def _rate(numerator: int, denominator: int) -> float | None:
    return round(100.0 * numerator / denominator, 1) if denominator else None


def _scores(row: Any) -> dict[str, Any]:
    counts = {name: int(getattr(row, name)) for name in COUNTS if name != "due"}
    counts["due"] = counts["reports"] - counts["rejected"]
    base = counts["due"] - counts["deferred"]
    hours = row.mean_handling_hours
    return {
        **counts,
        "closure_rate": _rate(counts["closed"], base),
        "on_time_rate": _rate(counts["closed_on_time"], base),
        "rework_rate": _rate(counts["reworked"], base),
        "satisfaction_rate": _rate(counts["satisfied"], counts["evaluated"]),
        "mean_handling_hours": round(float(hours), 1) if hours is not None else None,
    }


# Our own column names only (from UNITS), never the caller's text.
_AGGREGATES = """
    count(*) AS reports,
    count(*) FILTER (WHERE i.status = 'rejected') AS rejected,
    count(*) FILTER (WHERE i.deferred AND i.status NOT IN ('closed', 'rejected')) AS deferred,
    count(*) FILTER (WHERE i.status = 'closed') AS closed,
    count(*) FILTER (WHERE i.status = 'closed' AND i.closed_at <= i.due_at) AS closed_on_time,
    count(*) FILTER (WHERE i.reworks > 0 AND i.status <> 'rejected') AS reworked,
    count(*) FILTER (WHERE i.satisfaction IS NOT NULL) AS evaluated,
    count(*) FILTER (WHERE i.satisfaction IN ('satisfied', 'basically_satisfied')) AS satisfied,
    count(*) FILTER (WHERE i.status NOT IN ('closed', 'rejected') AND i.due_at < :now) AS overdue,
    avg(extract(epoch FROM i.closed_at - i.reported_at) / 3600) FILTER (WHERE i.status = 'closed')
        AS mean_handling_hours
"""
_CASES_WHERE = "i.reported_at >= :start AND i.reported_at < :end AND i.source = ANY(:sources)"


def _check_sources(sources: tuple[str, ...] | None) -> list[str]:
    chosen = list(sources or SOURCES)
    bad = [s for s in chosen if s not in SOURCES]
    if bad:
        raise InvalidInput(f"source {', '.join(bad)} unknown: use {', '.join(SOURCES)}")
    return chosen


def kpi(
    conn: Connection, *, period: Period, by: str = "subdistrict", sources: tuple[str, ...] | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Return the scores of every subdistrict, community or grid (``by``) for cases reported in ``period``.

    Units come from the boundary generation in force at the period's end (units without cases score
    zero cases); a case keeps the unit it was assigned to. ``total`` scores the whole city.
    """
    if by not in UNITS:
        raise InvalidInput(f"by={by!r} is not a unit: use subdistrict, community or grid")
    column, table = UNITS[by]
    params = {
        "start": period.start,
        "end": period.end,
        "sources": _check_sources(sources),
        "now": at or datetime.now(UTC),
        "moment": min(period.end - timedelta(microseconds=1), datetime.now(UTC)),
    }
    rows = conn.execute(
        text(
            f"""
            WITH units AS (
                SELECT u.code, u.name FROM {table} u
                WHERE u.generation = coalesce(citygrid_generation_at(:moment),
                                              (SELECT max(generation) FROM boundary_generations))
            ), scores AS (
                SELECT i.{column} AS code, {_AGGREGATES}
                FROM incidents i WHERE {_CASES_WHERE}
                GROUP BY i.{column}
            )
            SELECT coalesce(u.code, s.code) AS code, u.name,
                   {", ".join(f"coalesce(s.{c}, 0) AS {c}" for c in COUNTS if c != "due")},
                   s.mean_handling_hours
            FROM units u FULL JOIN scores s ON s.code = u.code
            ORDER BY 1 NULLS LAST
            """
        ),
        params,
    ).all()
    total = conn.execute(text(f"SELECT {_AGGREGATES} FROM incidents i WHERE {_CASES_WHERE}"), params).one()
    return {
        "period": period.as_dict(),
        "by": by,
        "sources": params["sources"],
        "definitions": DEFINITIONS,
        "rows": [{"code": r.code, "name": r.name, **_scores(r)} for r in rows],
        "total": _scores(total),
    }


DEFINITIONS = {
    "due": "reports − rejected (应结案数)",
    "closure_rate": "closed / (due − deferred) (结案率)",
    "on_time_rate": "closed by the due time / (due − deferred) (按期结案率)",
    "rework_rate": "cases sent back by a failed check / (due − deferred) (返工率)",
    "satisfaction_rate": "(satisfied + basically satisfied) / evaluated (满意率)",
    "mean_handling_hours": "mean hours from report to closure of the closed cases",
}


def pk(conn: Connection, *, quarter: Period, sources: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Rank the three subdistricts on each of the four PK themes for ``quarter``, with the numbers behind."""
    params = {
        "start": quarter.start,
        "end": quarter.end,
        "sources": _check_sources(sources),
        "now": datetime.now(UTC),
        "moment": min(quarter.end - timedelta(microseconds=1), datetime.now(UTC)),
    }
    rows = conn.execute(
        text(
            f"""
            WITH subdistricts_now AS (
                SELECT s.code, s.name FROM subdistricts s
                WHERE s.generation = coalesce(citygrid_generation_at(:moment),
                                              (SELECT max(generation) FROM boundary_generations))
            ), themes AS (
                SELECT DISTINCT pk_theme AS theme FROM catalogue_categories WHERE pk_theme IS NOT NULL
            ), scores AS (
                SELECT cc.pk_theme AS theme, i.subdistrict_code AS code, {_AGGREGATES}
                FROM incidents i
                JOIN catalogue_items ci ON ci.code = i.item_code
                JOIN catalogue_categories cc ON cc.code = ci.category_code
                WHERE {_CASES_WHERE} AND cc.pk_theme IS NOT NULL
                GROUP BY 1, 2
            )
            SELECT t.theme, sd.code, sd.name,
                   {", ".join(f"coalesce(s.{c}, 0) AS {c}" for c in COUNTS if c != "due")},
                   s.mean_handling_hours
            FROM themes t CROSS JOIN subdistricts_now sd
            LEFT JOIN scores s ON s.theme = t.theme AND s.code = sd.code
            ORDER BY t.theme, sd.code
            """
        ),
        params,
    ).all()
    buildings = {
        r.code: {"investigated": r.investigated, "demolished": r.demolished, "demolished_m2": round(r.m2, 1)}
        for r in conn.execute(
            text(
                """
                SELECT left(b.grid_code, 9) AS code,
                       count(*) FILTER (WHERE b.investigated_at >= CAST(:start AS timestamptz)::date
                                          AND b.investigated_at < CAST(:end AS timestamptz)::date) AS investigated,
                       count(*) FILTER (WHERE b.demolished_at >= CAST(:start AS timestamptz)::date
                                          AND b.demolished_at < CAST(:end AS timestamptz)::date) AS demolished,
                       coalesce(sum(b.demolished_m2) FILTER (WHERE b.demolished_at >= CAST(:start AS timestamptz)::date
                                          AND b.demolished_at < CAST(:end AS timestamptz)::date), 0) AS m2
                FROM illegal_buildings b WHERE b.grid_code IS NOT NULL GROUP BY 1
                """
            ),
            {"start": quarter.start, "end": quarter.end},
        )
    }
    themes: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        entry = {"code": r.code, "name": r.name, **_scores(r)}
        entry["score"] = _pk_score(entry)
        if r.theme == "demolition":
            entry["illegal_buildings"] = buildings.get(r.code, {"investigated": 0, "demolished": 0, "demolished_m2": 0})
        themes.setdefault(r.theme, []).append(entry)
    ranked = []
    for theme in PK_THEMES:
        entries = sorted(
            themes.get(theme, []),
            key=lambda e: (
                e["score"] is None,
                -(e["score"] or 0.0),
                -(e["closure_rate"] or 0.0),
                e["code"],
            ),
        )
        for rank, entry in enumerate(entries, start=1):
            entry["rank"] = rank
        ranked.append({"theme": theme, "label_zh": PK_THEMES[theme], "ranking": entries})
    return {
        "quarter": quarter.as_dict(),
        "sources": params["sources"],
        "score": "40 % closure rate + 40 % on-time rate + 20 % satisfaction rate (out of 100); "
        "ties: higher closure rate, then lower code",
        "themes": ranked,
    }


def _pk_score(entry: dict[str, Any]) -> float | None:
    """Return a theme's score out of 100, None without cases; a missing satisfaction rate counts as 0."""
    if entry["reports"] == 0 or entry["closure_rate"] is None:
        return None
    return round(sum(weight * (entry[name] or 0.0) for name, weight in PK_WEIGHTS.items()), 1)


def kpi_csv(result: dict[str, Any]) -> str:
    """Return the KPI rows (and the city total) as CSV, one unit per line."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    fields = (*COUNTS, *RATES)
    writer.writerow(["period", result["by"] + "_code", "name", *fields])
    for row in [*result["rows"], {"code": "total", "name": "全市 city", **result["total"]}]:
        writer.writerow([result["period"]["label"], row["code"], row["name"], *(row[f] for f in fields)])
    return buffer.getvalue()


def pk_csv(result: dict[str, Any]) -> str:
    """Return the PK rankings as CSV, one subdistrict and theme per line."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    fields = (*COUNTS, *RATES)
    writer.writerow(["quarter", "theme", "rank", "subdistrict_code", "name", "score", *fields])
    for theme in result["themes"]:
        for entry in theme["ranking"]:
            writer.writerow(
                [
                    result["quarter"]["label"], theme["theme"], entry["rank"], entry["code"], entry["name"],
                    entry["score"], *(entry[f] for f in fields),
                ]
            )  # fmt: skip
    return buffer.getvalue()
