"""How a plain CSV's rows are cut for writing back: each row's UTF-8 bytes and the comma before its chain."""

from __future__ import annotations

from spatial.owner_batch import MAX_POINTS, _parsed_csv, _plain_csv


def test_plain_rows_keep_their_text_and_gain_one_comma() -> None:
    assert _plain_csv("id,lon,lat\n1,104.244,23.371\n2,文山,23.3\n", MAX_POINTS) == (
        ["id", "lon", "lat"],
        [b"1,104.244,23.371,", "2,文山,23.3,".encode()],
    )


def test_crlf_blank_lines_and_a_last_line_without_line_end() -> None:
    expected = (["id", "lon", "lat"], [b"1,104.244,23.371,", b"2,104.2,23.3,"])
    assert _plain_csv("id,lon,lat\r\n1,104.244,23.371\r\n\r\n2,104.2,23.3", MAX_POINTS) == expected
    assert _plain_csv("id,lon,lat\r\n1,104.244,23.371\n\n2,104.2,23.3\r", MAX_POINTS) == expected
    assert _plain_csv("id,lon,lat\n\n1,104.244,23.371\n2,104.2,23.3\n\n", MAX_POINTS) == expected


def test_quotes_ragged_rows_and_repeated_names_need_the_parser() -> None:
    assert _plain_csv('id,lon,lat\n1,"a",23.3\n', MAX_POINTS) is None
    assert _plain_csv("id,lon,lat\n1,104.2,23.3,extra\n", MAX_POINTS) is None
    assert _plain_csv("id,lon,lon\n1,104.2,23.3\n", MAX_POINTS) is None


def test_the_parser_names_the_line_of_a_row_longer_than_the_header_and_fills_a_shorter_one() -> None:
    parsed = _parsed_csv('id,name,lon,lat\n1,"两行\n地址",104.2,23.3\n\n2,b,104.2,23.3,x,y\n3,c\n', MAX_POINTS)
    assert parsed.columns == ["id", "name", "lon", "lat"]
    assert parsed.rows == [["1", "两行\n地址", "104.2", "23.3"], ["2", "b", "104.2", "23.3"], ["3", "c", "", ""]]
    assert parsed.errors == {
        1: "line 5 has 6 fields but the header 4: not looked up, as which field is which is unclear; "
        "the fields after the 4th are left out here"
    }
