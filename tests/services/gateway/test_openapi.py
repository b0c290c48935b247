"""The OpenAPI document covers every route, and a fuzz driven by it never gets a 5xx."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from services.gateway.app import create_app
from services.gateway.health import HealthBook
from services.gateway.openapi import document
from tests.services.gateway.conftest import Stack

NOT_REST = {"/", "/login", "/ws", "/ws_logs", "/static/<path:filename>"}
IGNORED_METHODS = {"HEAD", "OPTIONS"}
EXAMPLES = int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "600"))  # raise it to hunt longer
SCHEMATHESIS_EXAMPLES = max(1, EXAMPLES // 60)


def app_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.rule in NOT_REST:
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        routes |= {(path, method.lower()) for method in rule.methods - IGNORED_METHODS}
    return routes


def documented(doc: dict) -> set[tuple[str, str]]:
    return {(path, method) for path, ops in doc["paths"].items() for method in ops}


def test_the_document_describes_exactly_the_routes():
    app = create_app(HealthBook())
    assert app_routes(app) == documented(document())


def test_path_parameters_match_the_route_names():
    for path, ops in document()["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for op in ops.values():
            declared = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert declared == names, path


def test_the_document_is_served_and_is_openapi_3_1():
    resp = create_app(HealthBook()).test_client().get("/api/openapi.json")
    assert resp.status_code == 200 and resp.get_json()["openapi"].startswith("3.1")


# --- fuzz ------------------------------------------------------------------------------------

# text, half of it with a lone surrogate: a JSON body may carry one (as "\ud800"), and the
# gateway must refuse it (or not care), not fail when it encodes it
SURROGATE = st.characters(categories=["Cs"])
TEXT = st.text(max_size=20) | st.builds(lambda a, s, b: a + s + b, st.text(max_size=8),
                                        SURROGATE, st.text(max_size=8))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)


def from_schema(schema: dict) -> st.SearchStrategy:
    """Values that follow ``schema`` (roughly), to get past the first checks."""
    kind = schema.get("type")
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**31)), schema.get("maximum", 2**31))
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        return st.text(max_size=schema.get("maxLength", 30)) | TEXT
    if kind == "object" and "properties" in schema:
        props = {k: from_schema(v) for k, v in schema["properties"].items()}
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: v for k, v in props.items() if k in required},
            optional={k: v for k, v in props.items() if k not in required})
    return JSON_VALUES


def wild_or_valid(schema: dict) -> st.SearchStrategy:
    return st.one_of(from_schema(schema), JSON_VALUES)


def as_text(value) -> str:
    """A value for a URL, which carries bytes: a lone surrogate cannot be sent (it is "?")."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode()
    return json.dumps(value)


@st.composite
def requests(draw, doc: dict, methods: frozenset[str] | None = None,
             paths: frozenset[str] | None = None):
    """``(method, url, query, body)`` for a documented operation (only ``methods`` on
    ``paths`` when given)."""
    ops_of = sorted((path, method, op) for path, ops in doc["paths"].items()
                    for method, op in ops.items()
                    if (methods is None or method in methods) and (paths is None or path in paths))
    path, method, op = draw(st.sampled_from(ops_of))
    url = path
    query = {}
    for param in op["parameters"]:
        if param["in"] == "path":
            value = draw(st.one_of(from_schema(param["schema"]), st.integers(-5, 10),
                                   st.text(min_size=1, max_size=8)))
            url = url.replace("{" + param["name"] + "}", quote(as_text(value), safe="") or "x")
        elif param.get("required") or draw(st.booleans()):
            query[param["name"]] = as_text(draw(wild_or_valid(param["schema"])))
    body = None
    if "requestBody" in op or method in ("post", "put", "delete"):
        schema = op.get("requestBody", {}).get("content", {}).get(
            "application/json", {}).get("schema", {})
        body = draw(st.one_of(st.none(), wild_or_valid(schema).map(json.dumps),
                              st.binary(max_size=20)))
    return method, url, query, body


def send(client, request, headers: dict | None = None):
    """One drawn ``request`` through a Flask test client, with extra ``headers``."""
    method, url, query, body = request
    return client.open(url, method=method.upper(), query_string=query, data=body,
                       headers={"Content-Type": "application/json", **(headers or {})})


def assert_well_formed(resp, request) -> None:
    """Never a 5xx, always JSON, and every error in the documented shape."""
    method, url, query, body = request
    assert resp.status_code < 500, (method, url, query, body, resp.get_data()[:300])
    assert resp.is_json, (method, url, resp.status_code, resp.get_data()[:300])
    if resp.status_code >= 400:
        assert set(resp.get_json()["error"]) == {"code", "message", "fields"}, (method, url)


def fuzz(strategy: st.SearchStrategy, check: Callable, examples: int = EXAMPLES) -> None:
    """``check(value)`` for ``examples`` values drawn from ``strategy``."""

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(value):
        check(value)

    run()


def test_fuzz_every_endpoint_never_answers_5xx(stack: Stack):
    client = stack.client()
    seen: set[tuple[str, str]] = set()

    def check(request):
        assert_well_formed(send(client, request), request)
        method, url, _, _ = request
        seen.add((method, url.split("?")[0]))

    fuzz(requests(document()), check)
    assert len(seen) > 20


# params and bot specs are checked against each strategy's own schema, which the document
# gives at /api/strategies: a body that fits the generic document may still be refused.
SEMANTIC = frozenset({("POST", "/api/bots"), ("PUT", "/api/bots/{bot_id}/params")})


def run_cases(cases: st.SearchStrategy, call: Callable) -> None:
    """``call(case, data)`` for each case (``data`` draws more values when needed)."""
    @settings(max_examples=SCHEMATHESIS_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(cases, st.data())
    def check(case, data):
        call(case, data)

    check()


def schemathesis_fuzz(app, call: Callable, semantic: frozenset = SEMANTIC,
                      **load_kwargs) -> int:
    """Schemathesis's valid and invalid cases for every documented operation (the document
    loaded from ``app`` with ``load_kwargs``), each handed to ``call(case, excluded, data)``:
    ``excluded`` holds the checks the operation cannot pass (``semantic`` operations may
    refuse a body that fits the document). Returns how many (operation, mode) runs made
    cases; skips the test when schemathesis is not installed."""
    schemathesis = pytest.importorskip("schemathesis")
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app, **load_kwargs)
    modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    tried = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        excluded = [schemathesis.checks.positive_data_acceptance] \
            if (operation.method.upper(), operation.path) in semantic else []
        for mode in modes:
            try:
                run_cases(operation.as_strategy(generation_mode=mode),
                          lambda case, data, excluded=excluded: call(case, excluded, data))
            except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
                assert mode == schemathesis.GenerationMode.NEGATIVE
                continue
            tried += 1
    return tried


def test_schemathesis_fuzz_every_operation(stack: Stack):
    """Schemathesis (when installed) drives valid and invalid cases from the document and
    checks each answer: never a 5xx, documented status and content type, and invalid input
    refused with a 4xx."""
    def call(case, excluded, data):
        case.call_and_validate(headers={"X-CSRF-Token": "fuzz"}, excluded_checks=excluded)

    assert schemathesis_fuzz(stack.app, call) > 40
