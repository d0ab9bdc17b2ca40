"""citygrid_import_time (0009: the text's shape looked up) answers as 0002's regular expressions did, every time."""

from __future__ import annotations

import re
from itertools import product

from sqlalchemy import text
from sqlalchemy.engine import Connection

# 0002's definition of citygrid_import_time(t), as an expression
REGEX_DEFINITION = r"""
    CASE
        WHEN t IS NULL
             OR t !~ ('^[0-9]{4}-[0-9]{2}-[0-9]{2}'
                      '([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)? ?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?)?$')
            THEN NULL
        WHEN substr(t, 1, 4) = '0000' OR substr(t, 6, 2) NOT BETWEEN '01' AND '12'
             OR substr(t, 9, 2) NOT BETWEEN '01' AND '31'
             OR (length(t) > 10 AND (substr(t, 12, 2) > '23' OR substr(t, 15, 2) > '59'
                                     OR (substr(t, 17, 1) = ':' AND substr(t, 18, 2) > '59')))
            THEN NULL
        WHEN substr(t, 9, 2) > '28'
             AND substr(t, 9, 2)::int > extract(day FROM make_date(substr(t, 1, 4)::int, substr(t, 6, 2)::int, 1)
                                                         + interval '1 month - 1 day')
            THEN NULL
        WHEN length(t) > 10 AND t ~ '(Z|[+-][0-9]{2}(:?[0-9]{2})?)$' THEN t::timestamptz
        ELSE t::timestamp AT TIME ZONE 'Asia/Shanghai'
    END
"""
DATES = ("2017-03-15", "2016-02-29", "2017-02-29", "2017-04-31", "2017-12-31", "2017-13-01", "0000-01-01",
         "2017-00-10", "2017-01-00", "2017-01-32")  # fmt: skip
TIMES = ("10:20", "23:59", "24:00", "10:60", "00:00")
SECONDS = ("", ":30", ":60", ":59.1", ":59.12", ":59.123", ":59.1234", ":59.12345", ":59.123456", ":59.1234567")
ZONES = ("", "Z", "+08", "-05", "+0800", "-0530", "+08:00", "-05:30", "z", "+8", "+08:0", "UTC")


def _texts() -> list[str]:
    """Every accepted form with real values, each with its near misses: a character changed, dropped, doubled."""
    texts = set(DATES)
    for date, sep, time, seconds, space, zone in product(DATES[:2], "T t", TIMES[:1], SECONDS, ("", " "), ZONES):
        texts.add(f"{date}{sep}{time}{seconds}{space}{zone}")
    for date, time, seconds in product(DATES, TIMES, SECONDS[:3]):
        texts.add(f"{date}T{time}{seconds}+08:00")
        texts.add(f"{date} {time}{seconds}")
    for t in sorted(texts):
        for i in range(len(t)):
            texts.update({t[:i] + "x" + t[i + 1 :], t[:i] + t[i + 1 :], t[:i] + t[i] + t[i:]})
    texts.update({"", " ", " 2017-03-15", "2017-03-15 ", "2017/03/15", "20170315", "2017-3-15", "二〇一七年"})
    # a zone no clock has (+88, a near miss of +08) fails the cast under either definition alike: left out
    return sorted(t for t in texts if not _impossible_zone(t))


def _impossible_zone(t: str) -> bool:
    zone = re.search(r"[+-]([0-9]{2}):?([0-9]{2})?$", t)
    return zone is not None and len(t) > 10 and (int(zone[1]) > 15 or int(zone[2] or 0) > 59)


def test_the_shape_lookup_reads_every_text_as_the_regular_expressions_did(conn: Connection) -> None:
    texts = _texts()
    differing = conn.execute(
        text(
            "SELECT t, citygrid_import_time(t) AS shape, " + REGEX_DEFINITION + " AS regex"
            " FROM unnest(CAST(:texts AS text[])) AS u (t)"
            " WHERE citygrid_import_time(t) IS DISTINCT FROM (" + REGEX_DEFINITION + ")"
        ),
        {"texts": texts},
    ).all()
    assert differing == []
    read = conn.execute(
        text("SELECT count(citygrid_import_time(t)) FROM unnest(CAST(:texts AS text[])) AS u (t)"), {"texts": texts}
    ).scalar_one()
    assert (len(texts), read) == (125_197, 2_929)  # every text, and the ones read as a time
    assert conn.execute(text("SELECT citygrid_import_time(NULL)")).scalar_one() is None
