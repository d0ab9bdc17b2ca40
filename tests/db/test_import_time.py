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


def test_a_column_found_plain_is_read_by_the_cast_alone_as_each_text_would_be(conn: Connection) -> None:
    texts = _texts()
    # each text as a column of its own: wherever the whole-column check passes it, the cast alone answers alike
    differing = conn.execute(
        text(
            "SELECT t FROM unnest(CAST(:texts AS text[])) AS u (t)"
            " WHERE CASE WHEN citygrid_import_column_times(ARRAY[t])"  # CASE: the cast only after the check
            "            THEN citygrid_import_time_shaped(t) IS DISTINCT FROM citygrid_import_time(t) END"
        ),
        {"texts": texts},
    ).all()
    assert differing == []
    passed, missed, no_such_day = conn.execute(
        text(
            "SELECT count(*) FILTER (WHERE citygrid_import_column_times(ARRAY[t])),"
            " count(*) FILTER (WHERE citygrid_import_time(t) IS NOT NULL"
            "                  AND NOT citygrid_import_column_times(ARRAY[t])),"
            " array_agg(DISTINCT left(t, 10)) FILTER (WHERE citygrid_import_column_times(ARRAY[t])"
            "                                          AND citygrid_import_time(t) IS NULL)"
            " FROM unnest(CAST(:texts AS text[])) AS u (t)"
        ),
        {"texts": texts},
    ).one()
    # the 2,929 texts read as times pass, and 38 with a day their month lacks (the cast alone is never tried on
    # those: citygrid_import_time_shaped reads the day first); no text read as a time fails the check
    assert (passed, missed, sorted(no_such_day)) == (2_967, 0, ["2017-02-29", "2017-04-31"])


def test_a_column_is_plain_only_when_every_text_is(conn: Connection) -> None:
    def times(*values: str | None) -> bool:
        return bool(conn.execute(text("SELECT citygrid_import_column_times(:v)"), {"v": list(values)}).scalar_one())

    def numbers(*values: str | None) -> bool:
        return bool(conn.execute(text("SELECT citygrid_import_column_numbers(:v)"), {"v": list(values)}).scalar_one())

    assert times("2017-05-01T09:30:00+08:00", None, "2017-05-02 10:00", "2017-05-03")
    assert not times("2017-05-01T09:30:00+08:00", "2017-05-01T09:30:00+08:0")
    assert not times("2017-05-01T09:30:00+08:00", "2017-13-01")
    # two texts in one, which the newline between them would otherwise pass as two lines
    assert not times("2017-05-01\n2017-05-02")
    assert not times("")
    assert not times() and not times(None)  # nothing to cast: the per-text reading of a NULL costs nothing
    assert numbers("104.25", "-23", "+1.5e3", ".5", "7.", None)
    assert not numbers("104.25", " 104.25")  # white space: the per-text expression reads it
    assert not numbers("104,25") and not numbers("1\n2") and not numbers("0x10")


def test_a_column_found_zoned_or_local_is_read_by_one_cast_as_each_text_would_be(conn: Connection) -> None:
    texts = _texts()
    # each text as a column of its own (0017): wherever the whole-column check names a reading, it answers alike
    differing = conn.execute(
        text(
            "SELECT t, v FROM (SELECT t, citygrid_import_joined_times(t, 1) AS v"
            "                  FROM unnest(CAST(:texts AS text[])) AS u (t)) c"
            " WHERE CASE v WHEN 'zoned' THEN CAST(t AS timestamptz)"  # CASE: each cast only after the check
            "              WHEN 'local' THEN CAST(t AS timestamp) AT TIME ZONE 'Asia/Shanghai'"
            "              WHEN 'shaped' THEN citygrid_import_time_shaped(t) END"
            "       IS DISTINCT FROM CASE WHEN v IS NOT NULL THEN citygrid_import_time(t) END"
        ),
        {"texts": texts},
    ).all()
    assert differing == []
    readings = dict(
        conn.execute(
            text(
                "SELECT coalesce(citygrid_import_joined_times(t, 1), 'per text'), count(*)"
                " FROM unnest(CAST(:texts AS text[])) AS u (t)"
                " WHERE citygrid_import_time(t) IS NOT NULL OR citygrid_import_joined_times(t, 1) IS NOT NULL"
                " GROUP BY 1"
            ),
            {"texts": texts},
        ).all()
    )
    # the 2,929 texts read as times and the 38 with a day their month lacks, as 0012's check passes them: those
    # and every 29 February (half of the forms above are of 2016-02-29) left to citygrid_import_time_shaped; no
    # text read as a time is left to be read per text
    assert readings == {"zoned": 1_252, "local": 222, "shaped": 1_493}


def test_a_joined_column_is_plain_only_when_every_text_is(conn: Connection) -> None:
    def times(*values: str | None) -> str | None:
        return conn.execute(
            text(
                "SELECT citygrid_import_joined_times(string_agg(v, E'\\n'), count(v)) FROM unnest(CAST(:v AS text[])) v"
            ),
            {"v": list(values)},
        ).scalar_one()

    def numbers(*values: str | None) -> bool:
        return bool(
            conn.execute(
                text(
                    "SELECT citygrid_import_joined_numbers(string_agg(v, E'\\n'), count(v))"
                    " FROM unnest(CAST(:v AS text[])) v"
                ),
                {"v": list(values)},
            ).scalar_one()
        )

    assert times("2017-05-01T09:30:00+08:00", None, "2017-05-02T10:00Z", "2017-05-03 10:00:00.5 -0530") == "zoned"
    assert times("2017-05-01T09:30:00", None, "2017-05-02 10:00", "2017-05-03") == "local"
    assert times("2017-05-01T09:30:00+08:00", "2017-05-02 10:00") == "shaped"  # a zone in some texts only
    assert times("2017-05-01T09:30:00+08:00", "2016-02-29T09:30:00+08:00") == "shaped"  # the day is read per text
    assert times("2017-04-30", "2017-04-31") == "shaped"
    assert times("2017-05-01T09:30:00+08:00", "2017-05-01T09:30:00+08:0") is None
    assert times("2017-05-01T09:30:00+08:00", "2017-13-01") is None
    # two texts in one, which the newline between them would otherwise pass as two lines
    assert times("2017-05-01\n2017-05-02") is None
    assert times("2017-05-01\n2017-05-02", None, "2017-05-03") is None
    assert times("") is None
    assert times() == "zoned" and times(None) == "zoned"  # no text: nothing to read
    assert numbers("104.25", "-23", "+1.5e3", ".5", "7.", None)
    assert not numbers("104.25", " 104.25")  # white space: the per-text expression reads it
    assert not numbers("104,25") and not numbers("1\n2") and not numbers("0x10") and not numbers("")
    assert not numbers() and not numbers(None)
