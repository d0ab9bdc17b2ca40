"""Open311 GeoReport v2: every answer, JSON and XML, validates against the GeoReport v2 JSON Schemas."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft7Validator, FormatChecker
from referencing import Registry, Resource
from sqlalchemy import Engine, text

from spatial.crs import wgs84_to_gcj02
from tests.api.casekit import GRID_2, Keys, made_keys

SCHEMAS = Path(__file__).resolve().parent.parent / "open311_schemas"
BASE = "/open311/v2"
FORMATS = FormatChecker()
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


@FORMATS.checks("date-time")
def is_date_time(value: object) -> bool:
    return not isinstance(value, str) or (bool(RFC3339.match(value)) and bool(datetime.fromisoformat(value)))


@FORMATS.checks("uri")
def is_uri(value: object) -> bool:
    return not isinstance(value, str) or bool(urlparse(value).scheme and urlparse(value).netloc)


def _registry() -> Registry:
    resources = []
    for path in SCHEMAS.glob("*.json"):
        contents = json.loads(path.read_text(encoding="utf-8"))
        resources.append((contents["$id"], Resource.from_contents(contents)))
    return Registry().with_resources(resources)


REGISTRY = _registry()


def validate(instance: Any, schema: str) -> None:
    """Raise when ``instance`` does not validate against the named GeoReport v2 schema (formats included)."""
    contents = REGISTRY.contents(schema)
    Draft7Validator(contents, registry=REGISTRY, format_checker=FORMATS).validate(instance)


# XML → the JSON the schemas describe: repeated members become lists, and typed fields get their type back.
_LISTS = {"services", "service_requests", "attributes", "values", "errors"}
_TYPES = {"lat": float, "long": float, "order": int}
_BOOLEANS = {"metadata", "variable", "required"}


def _xml_value(element: ET.Element) -> Any:
    if element.tag in _LISTS:
        return [_xml_value(child) for child in element]
    if len(element):
        return {child.tag: _xml_value(child) for child in element}
    text_ = element.text or ""
    if element.tag in _BOOLEANS:
        assert text_ in ("true", "false")
        return text_ == "true"
    return _TYPES.get(element.tag, str)(text_)


def from_xml(body: bytes) -> Any:
    root = ET.fromstring(body)
    value = _xml_value(root)
    if root.tag == "errors":
        value = [{**e, "code": int(e["code"])} for e in value]
    return value


def without_nulls(value: Any) -> Any:
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    return value


def both(client: TestClient, path: str, schema: str, expect: int = 200, **params: Any) -> Any:
    """GET path in JSON and XML; check both validate and say the same; return the JSON."""
    as_json = client.get(f"{BASE}/{path}.json", params=params)
    as_xml = client.get(f"{BASE}/{path}.xml", params=params)
    assert as_json.status_code == as_xml.status_code == expect, as_json.text[:500]
    assert as_xml.headers["content-type"].startswith("text/xml")
    validate(as_json.json(), schema)
    validate(from_xml(as_xml.content), schema)
    assert from_xml(as_xml.content) == without_nulls(as_json.json())
    return as_json.json()


@pytest.fixture(scope="module")
def keys(engine: Engine) -> Iterator[Keys]:
    with made_keys(engine) as made:
        yield made


def test_services_are_the_147_catalogue_items(client: TestClient) -> None:
    services = both(client, "services", "services.json")
    assert len(services) == 147
    stalls = next(s for s in services if s["service_code"] == "0508")
    assert stalls["service_name"] == "占道经营"
    assert (stalls["type"], stalls["metadata"], stalls["group"]) == ("realtime", True, "街面秩序")
    assert both(client, "services", "services.json", jurisdiction_id="532601") == services


def test_a_service_definition_names_its_attributes(client: TestClient) -> None:
    definition = both(client, "services/0508", "service-definition.json")
    assert definition["service_code"] == "0508"
    assert [a["code"] for a in definition["attributes"]] == ["coordinate_system", "time_limit"]
    assert [v["key"] for v in definition["attributes"][0]["values"]] == ["wgs84", "gcj02", "bd09", "cgcs2000"]
    assert definition["attributes"][1]["description"] == (
        "处置时限 1 个工作日（按国家法定工作日历）/ time limit: 1 working day on the official working calendar"
    )
    errors = both(client, "services/9999", "errors.json", expect=404)
    assert errors[0]["code"] == 404 and "9999" in errors[0]["description"]


def test_a_posted_request_is_a_case_with_its_chain_and_reads_back(client: TestClient, keys: Keys) -> None:
    lon, lat = wgs84_to_gcj02(*GRID_2)  # a phone's GCJ-02 point, said so with the attribute
    form = {
        "api_key": keys.secrets["public"], "jurisdiction_id": "532601", "service_code": "0508", "lat": str(lat),
        "long": str(lon), "description": "人行道上摆摊", "media_url": "https://photos.example/stall.jpg",
        "email": "citizen@example.org", "first_name": "Li", "account_id": "acct-42",
        "attribute[coordinate_system]": "gcj02",
    }  # fmt: skip
    posted = client.post(f"{BASE}/requests.json", data=form)
    assert posted.status_code == 201, posted.text
    answer = posted.json()
    validate(answer, "request-response.json")
    code, token = answer[0]["service_request_id"], answer[0]["token"]
    assert code.startswith("OS") and answer[0]["account_id"] == "acct-42"
    assert answer[0]["service_notice"].startswith("开化街道城管执法中队处理，网格员")

    posted_xml = client.post(f"{BASE}/requests.xml", data={**form, "description": "again, in XML"})
    assert posted_xml.status_code == 201
    validate(from_xml(posted_xml.content), "request-response.json")

    assert both(client, f"tokens/{token}", "token-response.json") == [{"service_request_id": code, "token": token}]
    [request] = both(client, f"requests/{code}", "requests.json")
    assert request["status"] == "open"
    assert request["service_code"] == "0508" and request["service_name"] == "占道经营"
    assert request["address_id"] == "532601001001002"
    assert request["address"] == "开化街道东风社区第2网格"  # the grid's name holds its community's
    assert request["agency_responsible"] == "开化街道城管执法中队"
    assert request["lat"] == pytest.approx(GRID_2[1], abs=1e-7) and request["long"] == pytest.approx(
        GRID_2[0], abs=1e-7
    )
    assert request["media_url"] == "https://photos.example/stall.jpg"
    assert request["status_notes"] == "信息收集 (collected)"
    recent = both(client, "requests", "requests.json")  # no dates: the last 90 days
    assert code in [r["service_request_id"] for r in recent]


def test_requests_are_found_by_service_dates_and_status_and_paged(client: TestClient, engine: Engine) -> None:
    window = {"start_date": "2017-04-01T00:00:00+08:00", "end_date": "2017-06-29T00:00:00+08:00"}
    closed = both(client, "requests", "requests.json", service_code="0508", status="closed", page_size=1000, **window)
    with engine.connect() as conn:
        expected = conn.execute(
            text(
                "SELECT count(*) FROM incidents WHERE item_code = '0508' AND status IN ('closed', 'rejected')"
                " AND reported_at >= '2017-04-01T00:00:00+08:00' AND reported_at < '2017-06-29T00:00:00+08:00'"
            )
        ).scalar_one()
    assert len(closed) == expected == 66
    assert {r["status"] for r in closed} == {"closed"}
    assert [r["requested_datetime"] for r in closed] == sorted((r["requested_datetime"] for r in closed), reverse=True)
    first = both(client, "requests", "requests.json", service_code="0508", page_size=10, page=1, **window)
    second = both(client, "requests", "requests.json", service_code="0508", page_size=10, page=2, **window)
    assert len(first) == len(second) == 10
    assert not {r["service_request_id"] for r in first} & {r["service_request_id"] for r in second}
    by_id = both(client, "requests", "requests.json", service_request_id="RX2017-000001,RX2017-000002,XF2017-000001")
    assert sorted(r["service_request_id"] for r in by_id) == ["RX2017-000001", "RX2017-000002", "XF2017-000001"]


def test_errors_take_the_specs_form(client: TestClient, keys: Keys) -> None:
    form = {"service_code": "0508", "lat": str(GRID_2[1]), "long": str(GRID_2[0])}
    no_key = client.post(f"{BASE}/requests.json", data=form)
    assert no_key.status_code == 403
    validate(no_key.json(), "errors.json")
    assert no_key.json()[0]["description"] == (
        "api_key is required: send the key this city gave your application as the api_key field"
    )
    as_json = client.post(f"{BASE}/requests.json", json={**form, "api_key": keys.secrets["public"]})
    assert as_json.status_code == 400
    assert as_json.json()[0]["description"].startswith("the request is read as a form")
    bad_key = client.post(f"{BASE}/requests.xml", data={**form, "api_key": "cg_nope"})
    assert bad_key.status_code == 403
    validate(from_xml(bad_key.content), "errors.json")
    with_key = {**form, "api_key": keys.secrets["public"]}
    for bad, status, words in (
        ({**with_key, "service_code": "9999"}, 400, "147 catalogue items"),
        ({**with_key, "lat": ""}, 400, "lat and long are required"),
        ({**with_key, "long": "east"}, 400, "not a number"),
        ({**with_key, "jurisdiction_id": "110101"}, 404, "532601"),
    ):
        response = client.post(f"{BASE}/requests.json", data=bad)
        assert response.status_code == status, response.text
        validate(response.json(), "errors.json")
        assert response.json()[0]["code"] == status and words in response.json()[0]["description"]
    too_long = both(client, "requests", "errors.json", expect=400, start_date="2017-01-01T00:00:00+08:00",
                    end_date="2017-06-01T00:00:00+08:00")  # fmt: skip
    assert "90 days" in too_long[0]["description"]
    assert both(client, "requests", "errors.json", expect=400, status="x", page_size=0)[0]["code"] == 400
    assert both(client, "tokens/nothing", "errors.json", expect=404)[0]["code"] == 404
    assert both(client, "requests/RX1999-000001", "errors.json", expect=404)[0]["code"] == 404
    wrong_format = client.get(f"{BASE}/services.csv")
    assert wrong_format.status_code == 404 and wrong_format.json()[0]["code"] == 404


def test_control_characters_and_nul_in_a_report(client: TestClient, keys: Keys) -> None:
    """A control character in a description is shown as U+FFFD in XML (which cannot carry it), not a broken list;
    a NUL, which the database cannot store, is a bad request in the spec's form."""
    form = {
        "api_key": keys.secrets["public"], "service_code": "0201", "lat": str(GRID_2[1]), "long": str(GRID_2[0]),
        "description": "控制\x01字符\x1f",
    }  # fmt: skip
    posted = client.post(f"{BASE}/requests.json", data=form)
    assert posted.status_code == 201, posted.text
    code = posted.json()[0]["service_request_id"]
    assert client.get(f"{BASE}/requests/{code}.json").json()[0]["description"] == "控制\x01字符\x1f"
    [as_xml] = from_xml(client.get(f"{BASE}/requests/{code}.xml").content)  # well-formed: it parses
    assert as_xml["description"] == "控制\ufffd字符\ufffd"
    listed = client.get(f"{BASE}/requests.xml", params={"service_request_id": code})
    assert [r["service_request_id"] for r in from_xml(listed.content)] == [code]

    for field in ("first_name", "email", "description"):
        nul = client.post(f"{BASE}/requests.json", data={**form, field: "a\x00b"})
        assert nul.status_code == 400, (field, nul.text)
        validate(nul.json(), "errors.json")
        assert "NUL" in nul.json()[0]["description"]
    in_reporter = client.post(
        "/v1/incidents",
        json={"lon": GRID_2[0], "lat": GRID_2[1], "item_code": "0201", "source": "hotline",
              "reporter": {"name": "a\u0000b"}},
        headers=keys.header("dispatcher"),
    )  # fmt: skip
    assert in_reporter.status_code == 422, in_reporter.text
    assert in_reporter.json()["message"] == (
        "a text in the request contains a NUL (\\u0000) character, which cannot be stored: remove it"
        " (unsupported Unicode escape sequence)"
    )
