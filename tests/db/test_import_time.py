"""citygrid_import_time (0009: the text's shape looked up) answers as 0002's regular expressions did, every time."""

from __future__ import annotations

import re
from itertools import product

from sqlalchemy import text
from sqlalchemy.engine import Connection

from spatial.migrate import earlier_function

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
    # 0002's definition, beside the current one for this transaction only
    regex_definition = earlier_function("0002_cases", "citygrid_import_time")
    conn.execute(text(regex_definition.replace("citygrid_import_time(", "pg_temp.import_time_0002(", 1)))
    differing = conn.execute(
        text(
            "SELECT t, citygrid_import_time(t) AS shape, pg_temp.import_time_0002(t) AS regex"
            " FROM unnest(CAST(:texts AS text[])) AS u (t)"
            " WHERE citygrid_import_time(t) IS DISTINCT FROM pg_temp.import_time_0002(t)"
        ),
        {"texts": texts},
    ).all()
    assert differing == []
    read = conn.execute(
        text("SELECT count(citygrid_import_time(t)) FROM unnest(CAST(:texts AS text[])) AS u (t)"), {"texts": texts}
    ).scalar_one()
    assert (len(texts), read) == (125_197, 2_929)  # every text, and the ones read as a time
    assert conn.execute(text("SELECT citygrid_import_time(NULL)")).scalar_one() is None
