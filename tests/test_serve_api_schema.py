"""schemathesis against the app's own ``/openapi.json`` (streaming routes excluded): no 5xx on any generated request,
and each answer matches what the document says. Bounded: a fixed number of examples per route, no deadline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402
from tests.api_support import FakeLive, FakePipeline, build_app, stats_metrics  # noqa: E402
from tests.test_serve_store import make_event, write_all  # noqa: E402

from maskwatch.serve.api import ServiceHooks  # noqa: E402
from maskwatch.serve.events import CountDelta, EventMessage  # noqa: E402
from maskwatch.serve.store import Store  # noqa: E402

pytestmark = pytest.mark.slow  # ~20-40 s on 2 cores
EXAMPLES = 30
BOUNDED = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)


@pytest.fixture
def api_schema(tmp_path: Path):
    store = Store(f"sqlite:///{tmp_path / 'e.db'}").open()
    image = np.full((120, 160, 3), 200, np.uint8)
    write_all(
        store,
        [EventMessage("new", make_event(1), image, None), EventMessage("new", make_event(2, camera="hall"))],
        [CountDelta("door", "2026-05-28T20:00:00Z", 3, 2, 1)],
        tmp_path=tmp_path,
    )
    hooks = ServiceHooks(live=FakeLive(), pipeline=FakePipeline, metrics=stats_metrics())
    app = build_app(store, hooks=hooks, max_upload_bytes=64 * 1024)
    return schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path_regex=r"/stream$")


def operations(schema) -> list:
    found = [result.ok() for result in schema.get_all_operations()]
    assert len(found) >= 12, [op.label for op in found]  # every route but the two streams
    return found


def test_every_generated_request_is_answered_as_documented(api_schema):
    """Positive cases (valid by the document): no 5xx, and status, content type and body as documented.

    Not checked: that every schema-valid value is accepted (a ``since`` of any text is schema-valid, and refused with
    422 naming the parameter, which is the point)."""
    for operation in operations(api_schema):

        @given(case=operation.as_strategy())
        @BOUNDED
        def check(case) -> None:
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        check()


def test_no_server_error_on_requests_that_break_the_document(api_schema):
    """Negative cases (wrong types, missing fields, junk bodies): refused with 4xx, never 5xx."""
    tried: list[str] = []
    for operation in operations(api_schema):

        @given(case=operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
        @BOUNDED
        def check(case) -> None:
            response = case.call()
            assert response.status_code < 500, (
                case.operation.label,
                case.as_curl_command(),
                response.status_code,
                response.text[:300],
            )

        try:
            check()
            tried.append(operation.label)
        except Unsatisfiable:  # nothing to break: no parameters, or only free-text path parts
            continue
    assert {"GET /api/events", "GET /api/stats", "POST /api/detect", "POST /api/login"} <= set(tried), tried
