"""The OpenAPI fuzz against a gateway with a dashboard password: as a logged-in user (session
cookie and CSRF token) and with a bearer API token every operation gets past auth and is
answered well; without credentials (or with wrong ones) every route but the ones auth.py
leaves open is refused with 401/403, and no answer shows a secret.

API tokens cannot be made through the API (the gateway only reads ``GATEWAY_API_TOKENS``),
so the gateway here is started with two configured tokens. ``GATEWAY_FUZZ_EXAMPLES`` makes
the fuzz longer, as in test_openapi.py.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import unquote

import pytest
from flask import Flask
from hypothesis import strategies as st
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from werkzeug.security import generate_password_hash
from werkzeug.wrappers import Response

from services.gateway.auth import CSRF_HEADER, PUBLIC_PATHS, UNSAFE_METHODS
from services.gateway.openapi import document
from tests.services.gateway.conftest import Stack, running_stack
from tests.services.gateway.test_openapi import (
    EXAMPLES,
    SEMANTIC,
    assert_well_formed,
    fuzz,
    requests,
    schemathesis_fuzz,
    send,
)

PASSWORD = "fuzz-dashboard-pw-7f3a9c"
HASHED = generate_password_hash(PASSWORD)
TOKEN = "tok-fuzz-0123456789abcdef"
OTHER_TOKEN = "tok-other-fedcba9876543210"
COOKIE = "gateway_session"
REPORT = "fuzz-report"
UNSAFE = frozenset(m.lower() for m in UNSAFE_METHODS)
REFUSED = (401, 403)
# the documented routes auth.py leaves open (PUBLIC_PATHS): opening one more must be a choice
OPEN = frozenset({"/api/session", "/api/login", "/api/logout"})
# a password no generator can know is refused (401) even when the request is well-formed
AUTH_SEMANTIC = SEMANTIC | {("POST", "/api/login")}
EVERY_OPERATION = frozenset((method.upper(), path) for path, ops in document()["paths"].items()
                            for method in ops)
# what a header value can be: latin-1 without control characters, no space around it
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                    exclude_characters="\x7f"), max_size=40).map(str.strip)


@pytest.fixture
def secured(request, bus, ctx, endpoints, tmp_path) -> Iterator[Stack]:
    """The stack with a password (``param`` "password", the default) or only its hash
    ("hash"), two API tokens, one saved report, and no login throttling."""
    secret = {"DASHBOARD_PASSWORD_HASH": HASHED} if getattr(request, "param", "") == "hash" \
        else {"DASHBOARD_PASSWORD": PASSWORD}
    with running_stack(ctx, endpoints, tmp_path, GATEWAY_API_TOKENS=f"{OTHER_TOKEN},{TOKEN}",
                       **secret) as stack:
        reports = tmp_path / "reports"
        reports.mkdir()
        (reports / f"{REPORT}.html").write_text("<!doctype html><title>report</title>")
        (reports / "index.json").write_text(json.dumps(
            {"reports": [{"name": REPORT, "created_ms": 1}]}))
        stack.app.config["REPORTS_DIR"] = str(reports)
        # every fuzzed login reaches the password check (throttling is test_auth.py's)
        stack.app.extensions["gateway_auth"].throttle.max_failures = 10**9
        yield stack


def secrets_of(app: Flask) -> list[str]:
    """What no answer may ever show."""
    return [PASSWORD, HASHED, TOKEN, OTHER_TOKEN, app.config["SECRET_KEY"]]


def assert_no_secret(resp: Response, secrets: list[str], what, in_body: tuple = ()) -> None:
    """None of ``secrets`` in the answer, nor any of ``in_body`` in its body (a session's
    own cookie comes back in ``Set-Cookie``: Flask refreshes a permanent session)."""
    body = resp.get_data(as_text=True)
    text = body + str(resp.headers)
    assert not [s for s in secrets if s in text], what
    assert not [s for s in in_body if s in body], what


def assert_no_error_logged(caplog) -> None:
    errors = [r for r in caplog.records
              if r.name.startswith("services.gateway") and r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def log_in(app: Flask) -> tuple[str, str]:
    """A fresh logged-in session: its cookie value and its CSRF token."""
    client = app.test_client()
    resp = client.post("/api/login", json={"password": PASSWORD})
    assert resp.status_code == 200, resp.get_json()
    return client.get_cookie(COOKIE).value, resp.get_json()["csrf_token"]


def as_werkzeug(response) -> Response:
    """A schemathesis answer as a werkzeug one, for the checks written for the test client."""
    headers = [(name, value) for name, values in response.headers.items() for value in values]
    return Response(response.content, response.status_code, headers)


def sweep(doc: dict) -> Iterator[tuple[str, str, dict, str | None]]:
    """One plain request per documented operation, naming things that exist."""
    values = {"bot_id": "1", "order_ref": "1", "alert_id": "1", "name": REPORT}
    for path, ops in sorted(doc["paths"].items()):
        url = path
        for name, value in values.items():
            url = url.replace("{" + name + "}", value)
        for method, op in sorted(ops.items()):
            query = {p["name"]: {"symbol": "BTCUSDT", "interval": "1m"}[p["name"]]
                     for p in op["parameters"] if p["in"] == "query" and p.get("required")}
            yield method, url, query, "{}" if method in UNSAFE else None


def error_code(resp: Response) -> str | None:
    body = resp.get_json(silent=True)
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def path_of(url: str) -> str:
    return unquote(url.split("?")[0])


# --- as an authenticated user ------------------------------------------------------------------


@dataclass
class Tally:
    """Answers by status, and the operations that succeeded (2xx)."""

    statuses: Counter = field(default_factory=Counter)
    succeeded: set = field(default_factory=set)

    def past_auth(self) -> int:
        return sum(n for status, n in self.statuses.items() if status not in REFUSED)

    def total(self) -> int:
        return sum(self.statuses.values())


def check_authenticated(resp: Response, method: str, path: str, secrets: list[str],
                        tally: Tally) -> None:
    """Past auth: the only refusal left is a wrong password at the login route."""
    status = resp.status_code
    if status in REFUSED:
        assert (method.lower(), path, status, error_code(resp)) == (
            "post", "/api/login", 401, "bad_password"), resp.get_data()[:300]
    assert_no_secret(resp, secrets, (method, path))
    tally.statuses[status] += 1
    if 200 <= status < 300:
        tally.succeeded.add((method.lower(), path))


@pytest.mark.parametrize(("secured", "how"), [("password", "session"), ("hash", "bearer")],
                         indirect=["secured"])
def test_fuzz_every_operation_as_an_authenticated_user(secured: Stack, how: str, caplog):
    """Logged in (cookie + CSRF token) or with a bearer token: the hand-written fuzz and
    schemathesis never get a 5xx or a non-JSON answer, errors have the documented shape,
    schemathesis's checks pass, and (nearly) every answer is past auth."""
    caplog.set_level(logging.ERROR, "services.gateway")
    app = secured.app
    doc = document()
    secrets = secrets_of(app)
    if how == "session":
        cookie, csrf = log_in(app)
        headers = {"Cookie": f"{COOKIE}={cookie}", CSRF_HEADER: csrf}
        call_kwargs = {"headers": {CSRF_HEADER: csrf}, "cookies": {COOKIE: cookie}}
    else:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        call_kwargs = {"headers": dict(headers)}
    client = app.test_client(use_cookies=False)  # a logout must not end the fuzz's session
    for symbol in ("ETHUSDT", "BNBUSDT"):  # bots to find (the fuzz may delete them)
        created = send(client, ("post", "/api/bots", {}, json.dumps(
            {"strategy": "SCALPING", "symbol": symbol, "timeframe": "1m"})), headers)
        assert created.status_code == 201, created.get_json()

    hand = Tally()

    def check(request):
        resp = send(client, request, headers)
        assert_well_formed(resp, request)
        check_authenticated(resp, request[0], path_of(request[1]), secrets, hand)

    fuzz(requests(doc), check)

    schema = Tally()

    def call(case, excluded, data):
        response = case.call_and_validate(excluded_checks=excluded, **call_kwargs)
        resp = as_werkzeug(response)
        assert_well_formed(resp, (case.method, case.path, case.query, case.body))
        check_authenticated(resp, case.method, case.operation.path, secrets, schema)

    tried = schemathesis_fuzz(app, call, AUTH_SEMANTIC, headers={"Authorization":
                                                                  f"Bearer {TOKEN}"})

    for request in sweep(doc):  # every operation once more, with things that exist
        resp = send(client, request, headers)
        assert resp.status_code < 500 and resp.status_code not in REFUSED, request
        check_authenticated(resp, request[0], path_of(request[1]), secrets, Tally())
        if request[1].startswith("/reports/"):
            assert resp.status_code == 200 and resp.mimetype == "text/html"
        else:
            assert_well_formed(resp, request)

    print(f"{how}: hand-written {dict(hand.statuses)}, schemathesis {dict(schema.statuses)}")
    assert tried > 40
    assert_no_error_logged(caplog)
    for tally in (hand, schema):  # the fuzz got past the door, and often all the way
        assert tally.past_auth() >= 0.9 * tally.total(), tally.statuses
        assert sum(n for s, n in tally.statuses.items() if s < 300) >= 0.1 * tally.total()
        assert len(tally.succeeded) >= 10, tally.succeeded


# --- without (good) credentials ----------------------------------------------------------------


@dataclass(frozen=True)
class Creds:
    """What a request carries: headers and a session cookie. ``logged_in``: a good session,
    sent on an unsafe method without the right CSRF token."""

    name: str
    headers: dict = field(default_factory=dict)
    cookie: str = ""
    logged_in: bool = False

    def all_headers(self) -> dict:
        return {**self.headers, **({"Cookie": f"{COOKIE}={self.cookie}"} if self.cookie else {})}


def session_cookie(app: Flask, data: dict, key: str | None = None, age_s: int = 0) -> str:
    """A session cookie as the gateway signs it, or with another ``key``, ``age_s`` old."""
    interface = app.session_interface

    class Signer(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age_s

    serializer = URLSafeTimedSerializer(
        key or app.secret_key, salt=interface.salt, serializer=interface.serializer,
        signer=Signer, signer_kwargs={"key_derivation": interface.key_derivation,
                                      "digest_method": interface.digest_method})
    return serializer.dumps(data)


def logged_out(app: Flask) -> tuple[str, str]:
    """The cookie a logout leaves behind, and its CSRF token."""
    client = app.test_client()
    csrf = client.post("/api/login", json={"password": PASSWORD}).get_json()["csrf_token"]
    resp = client.post("/api/logout", headers={CSRF_HEADER: csrf})
    assert resp.status_code == 200 and resp.get_json()["authenticated"] is False
    return client.get_cookie(COOKIE).value, resp.get_json()["csrf_token"]


@dataclass
class Refusals:
    """Wrong credentials, fixed and fuzzed; the good session's cookie and CSRF token."""

    without_auth: list[Creds]
    bad_csrf: list[Creds]
    cookie: str
    csrf: str

    def strategy(self, method: str) -> st.SearchStrategy[Creds]:
        tokens = (TOKEN, OTHER_TOKEN)
        fuzzed_token = HEADER_TEXT.filter(lambda t: t.strip() not in tokens).map(
            lambda t: Creds("fuzzed bearer token", {"Authorization": f"Bearer {t}"}))
        out = st.sampled_from(self.without_auth) | fuzzed_token
        if method.lower() in UNSAFE:
            fuzzed_csrf = HEADER_TEXT.filter(lambda t: t != self.csrf).map(
                lambda t: Creds("fuzzed CSRF token", {CSRF_HEADER: t}, self.cookie, True))
            out = out | st.sampled_from(self.bad_csrf) | fuzzed_csrf
        return out


def refusals(app: Flask) -> Refusals:
    cookie, csrf = log_in(app)
    _, other_csrf = log_in(app)
    out_cookie, out_csrf = logged_out(app)
    good = {"auth": True, "csrf": csrf, "_permanent": True}
    basic = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    client = app.test_client(use_cookies=False)
    for works in (cookie, session_cookie(app, good)):  # so the forged ones differ only there
        assert client.get("/api/health", headers={"Cookie": f"{COOKIE}={works}"}) \
            .status_code == 200
    without_auth = [
        Creds("nothing"),
        Creds("unknown token", {"Authorization": "Bearer tok-revoked-0000000000"}),
        Creds("token cut short", {"Authorization": f"Bearer {TOKEN[:-1]}"}),
        Creds("token plus a character", {"Authorization": f"Bearer {TOKEN}0"}),
        Creds("token in upper case", {"Authorization": f"Bearer {TOKEN.upper()}"}),
        Creds("empty bearer", {"Authorization": "Bearer "}),
        Creds("token without a scheme", {"Authorization": TOKEN}),
        Creds("token in another scheme", {"Authorization": f"Token {TOKEN}"}),
        Creds("token in another header", {"X-API-Key": TOKEN}),
        Creds("password as basic auth", {"Authorization": f"Basic {basic}"}),
        Creds("password as a token", {"Authorization": f"Bearer {PASSWORD}"}),
        Creds("expired session", {CSRF_HEADER: csrf},
              session_cookie(app, good, age_s=13 * 3600)),
        Creds("session signed with another key", {CSRF_HEADER: csrf},
              session_cookie(app, good, key="not-the-gateway-key")),
        Creds("unsigned session", {CSRF_HEADER: csrf}, base64.urlsafe_b64encode(
            json.dumps(good).encode()).decode().rstrip("=")),
        Creds("session cut short", {CSRF_HEADER: csrf}, cookie[:-2]),
        Creds("logged-out session", {CSRF_HEADER: out_csrf}, out_cookie),
        Creds("password as cookie", {CSRF_HEADER: csrf}, PASSWORD),
    ]
    bad_csrf = [
        Creds("no CSRF token", {}, cookie, True),
        Creds("empty CSRF token", {CSRF_HEADER: ""}, cookie, True),
        Creds("another session's CSRF token", {CSRF_HEADER: other_csrf}, cookie, True),
        Creds("CSRF token cut short", {CSRF_HEADER: csrf[:-1]}, cookie, True),
        Creds("CSRF token as a bearer token", {"Authorization": f"Bearer {csrf}"}, cookie,
              True),
    ]
    return Refusals(without_auth, bad_csrf, cookie, csrf)


def expected_refusal(method: str, path: str, creds: Creds) -> tuple[int, str] | None:
    """(status, error code) the gateway must refuse with; None where auth.py leaves it open."""
    if creds.logged_in:  # a good session: unsafe /api/ requests need the CSRF token
        return (403, "csrf") if path.startswith("/api/") and path != "/api/login" else None
    return None if path in OPEN else (401, "unauthorized")


def check_refused(app: Flask, resp: Response, method: str, path: str, creds: Creds,
                  wrong: Refusals, tally: Counter) -> None:
    what = (method, path, creds.name, resp.status_code, resp.get_data()[:200])
    assert resp.status_code < 500, what
    assert_no_secret(resp, secrets_of(app), what, (wrong.cookie, wrong.csrf))
    refusal = expected_refusal(method, path, creds)
    if refusal is not None:
        assert (resp.status_code, error_code(resp)) == refusal, what
        tally["refused"] += 1
    else:  # open by design: still never a way in
        tally["open"] += 1
        if path == "/api/login":
            assert not 200 <= resp.status_code < 300, what
        if path == "/api/session":
            assert resp.get_json()["authenticated"] is False, what
    if not creds.logged_in:
        serializer = app.session_interface.get_signing_serializer(app)
        for header in resp.headers.getlist("Set-Cookie"):
            name, _, rest = header.partition("=")
            if name == COOKIE and rest.split(";")[0]:
                assert not serializer.loads(rest.split(";")[0]).get("auth"), what


@pytest.mark.parametrize("secured", ["password", "hash"], indirect=True)
def test_fuzz_every_operation_without_credentials_is_refused(secured: Stack, caplog):
    """No credentials, wrong or stale ones (unknown, cut or altered tokens, expired, forged
    or logged-out sessions), or a good session without the right CSRF token on an unsafe
    method: every route but the open ones (auth.PUBLIC_PATHS) answers 401/403 in the error
    shape, never a 2xx or 5xx, never with a secret or a token in it; the open routes let
    nobody in."""
    caplog.set_level(logging.ERROR, "services.gateway")
    app = secured.app
    doc = document()
    assert frozenset(doc["paths"]) & PUBLIC_PATHS == OPEN
    wrong = refusals(app)
    client = app.test_client(use_cookies=False)
    tally: Counter = Counter()

    for request in sweep(doc):  # every operation with every fixed variant
        for creds in wrong.without_auth + (wrong.bad_csrf if request[0] in UNSAFE else []):
            resp = send(client, request, creds.all_headers())
            check_refused(app, resp, request[0], path_of(request[1]), creds, wrong, tally)

    def check(attempt):
        request, creds = attempt
        resp = send(client, request, creds.all_headers())
        assert_well_formed(resp, request)
        check_refused(app, resp, request[0], path_of(request[1]), creds, wrong, tally)

    attempts = requests(doc).flatmap(lambda r: st.tuples(st.just(r), wrong.strategy(r[0])))
    fuzz(attempts, check)
    # and the open routes (login above all: reachable by anyone) once more, on their own
    fuzz(requests(doc, paths=OPEN).flatmap(
        lambda r: st.tuples(st.just(r), wrong.strategy(r[0]))), check, max(1, EXAMPLES // 4))

    def call(case, excluded, data):
        creds = data.draw(wrong.strategy(case.method))
        response = case.call_and_validate(
            headers=creds.headers, cookies={COOKIE: creds.cookie} if creds.cookie else None,
            excluded_checks=excluded)
        resp = as_werkzeug(response)
        assert_well_formed(resp, (case.method, case.path, case.query, case.body))
        check_refused(app, resp, case.method, case.operation.path, creds, wrong, tally)

    # refusing well-formed input is the point here
    tried = schemathesis_fuzz(app, call, EVERY_OPERATION,
                              headers={"Authorization": f"Bearer {TOKEN}"})

    print(f"refusals: {dict(tally)}")
    assert tried > 40
    assert_no_error_logged(caplog)  # a stranger cannot write the gateway's error log
    assert tally["refused"] >= 0.8 * (tally["refused"] + tally["open"]), tally
