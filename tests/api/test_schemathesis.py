"""Schemathesis against our OpenAPI document: no 5xx, and every response as the document says (issue 7).

Every operation of ``/openapi.json`` (``/v1``, ``/open311``, ``/health``, ``/map``; tipg's ``/ogc`` has its own
document and its own tests) gets a bounded number of generated requests, valid ones and invalid ones, with an
admin key so that the authenticated steps are reached. Path parameters are drawn half the time from things that
exist (a case in each status, the public layers, a catalogue item), so that a step gets past its 404 to the
checks behind it. The run is deterministic (derandomised Hypothesis, no example database) and writes into a
database of its own, so that the other tests' exact counts are not disturbed.

Checks: no server error; status code, content type, headers and body as documented. Not checked: that every
schema-valid request is accepted (the document cannot say "inside the city" or "a catalogue item", so a
valid-looking point outside every grid is rightly refused), nor that every schema-invalid one is refused (on
the wire a query value ``true`` is also the string "true", and a number a valid unix time for a datetime).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from api.main import create_app
from spatial import migrate
from spatial.keys import create_key
from spatial.layers import PUBLIC
from spatial.loading import load_directory
from spatial.settings import DatabaseSettings, Settings
from spatial.tiles import TILE_LAYERS
from tests.support import FIXTURES, fresh_database, server_url

EXAMPLES_PER_MODE = 10
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@dataclass
class FuzzRun:
    """What the run did: operations, cases sent, and each failure with how to reproduce it."""

    operations: int = 0
    cases: int = 0
    failures: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def fuzz_app() -> Iterator[tuple[FastAPI, str, dict[str, list[str]]]]:
    """The API over a database of its own, an admin key, and existing values for each path parameter."""
    url = fresh_database((make_url(server_url()).database or "citygrid") + "_fuzz")
    migrate.migrate(url)
    engine = create_engine(url, poolclass=NullPool)
    load_directory(engine, FIXTURES)
    with engine.begin() as conn:
        _, secret = create_key(conn, name="schemathesis", role="admin")
        codes = list(
            conn.execute(text("SELECT DISTINCT ON (status) code FROM incidents ORDER BY status, code")).scalars()
        )
    engine.dispose()
    existing = {
        "code": codes,
        "service_request_id": codes,
        "name": list(PUBLIC),
        "layer": list(TILE_LAYERS),
        "service_code": ["0508", "0101"],
    }
    yield create_app(Settings(database=DatabaseSettings(DATABASE_URL=url))), secret, existing


def _cases(operation: Any, mode: GenerationMode, existing: dict[str, list[str]]) -> st.SearchStrategy[Any]:
    """Generated cases, half of them with path parameters that name existing things."""
    generated = operation.as_strategy(generation_mode=mode)
    names = [p.name for p in operation.path_parameters if p.name in existing]
    if not names or mode is GenerationMode.NEGATIVE:
        return generated
    fixed = st.fixed_dictionaries({name: st.sampled_from(existing[name]) for name in names})
    return st.one_of(generated, fixed.flatmap(lambda values: operation.as_strategy(path_parameters=values)))


def _fuzz(operation: Any, mode: GenerationMode, secret: str, existing: dict[str, list[str]], run: FuzzRun) -> None:
    """Send the operation's generated cases in ``mode``; add one report per kind of failure to ``run``."""
    seen: set[str] = set()

    def report(title: str, message: str, case: Any) -> None:
        title = f"{operation.label} ({mode.value}): {title}"
        if title not in seen:
            seen.add(title)
            run.failures.append(f"{title}\n{message}\n{case.as_curl_command()}")

    @given(case=_cases(operation, mode, existing))
    @settings(
        max_examples=EXAMPLES_PER_MODE,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def send(case: Any) -> None:
        run.cases += 1
        try:
            case.call_and_validate(headers={"X-API-Key": secret}, checks=CHECKS)
        except FailureGroup as group:
            for failure in group.exceptions:
                report(failure.title, failure.message, case)
        except Exception as exc:  # the app raised: a 500 to a client
            report(f"server error {type(exc).__name__}", str(exc), case)

    try:
        send()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE  # an operation without parameters has no invalid input


def test_no_server_errors_and_every_response_as_documented(
    fuzz_app: tuple[FastAPI, str, dict[str, list[str]]],
) -> None:
    app, secret, existing = fuzz_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    run = FuzzRun()
    for result in schema.get_all_operations():
        run.operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(result.ok(), mode, secret, existing, run)

    assert run.operations == sum(len(methods) for methods in app.openapi()["paths"].values())
    assert run.failures == [], f"{len(run.failures)} failures in {run.cases} cases:\n\n" + "\n\n".join(run.failures)
