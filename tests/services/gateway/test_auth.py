"""Auth: login with a session cookie, CSRF, login throttling, bearer tokens, WebSocket
access, the loopback guard without a password, and no secret in any reply or log."""

from __future__ import annotations

import io
import logging
import urllib.request
from contextlib import closing

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from werkzeug.security import generate_password_hash

from services.gateway.app import create_app
from services.gateway.health import HealthBook
from services.gateway.openapi import document
from services.gateway.service import GatewayService
from tests.services.gateway.conftest import start_gateway

PASSWORD = "correct-horse-battery"
TOKEN = "tok-0123456789abcdef"
HASHED = generate_password_hash("hashed-secret-pw")
JSON = {"Content-Type": "application/json"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**config):
    return create_app(HealthBook(), {"DASHBOARD_PASSWORD": PASSWORD, "API_TOKENS": TOKEN,
                                     **config})


def login(client, password: str = PASSWORD, address: str = "127.0.0.1"):
    return client.post("/api/login", json={"password": password},
                       environ_base={"REMOTE_ADDR": address})


# --- with a password --------------------------------------------------------------------


def test_api_needs_a_login_and_the_session_says_so():
    client = make().test_client()
    assert client.get("/api/health").status_code == 401
    assert client.get("/api/health").get_json()["error"]["code"] == "unauthorized"
    session = client.get("/api/session").get_json()
    assert session["auth_required"] is True and session["authenticated"] is False
    assert client.get("/").status_code == 200  # the page itself holds no data


def test_login_sets_a_strict_httponly_cookie_and_opens_the_api():
    client = make().test_client()

    resp = login(client)

    assert resp.status_code == 200 and resp.get_json()["authenticated"] is True
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    assert client.get("/api/health").status_code == 200


def test_the_cookie_is_secure_over_https():
    resp = make().test_client().post("/api/login", json={"password": PASSWORD},
                                     base_url="https://localhost")
    assert "Secure" in resp.headers["Set-Cookie"]


def test_wrong_password_is_401_with_a_field_error():
    resp = login(make().test_client(), "nope")
    assert resp.status_code == 401
    assert resp.get_json()["error"]["fields"] == {"password": "wrong password"}


def test_a_password_hash_works_instead_of_the_password():
    client = create_app(HealthBook(), {"DASHBOARD_PASSWORD_HASH": HASHED}).test_client()
    assert login(client, PASSWORD).status_code == 401
    assert login(client, "hashed-secret-pw").status_code == 200


def test_state_changing_requests_need_the_csrf_token():
    client = make().test_client()
    token = login(client).get_json()["csrf_token"]

    without = client.post("/api/killswitch", json={"enabled": True})
    wrong = client.post("/api/killswitch", json={"enabled": True},
                        headers={"X-CSRF-Token": "forged"})
    right = client.post("/api/killswitch", json={"enabled": True},
                        headers={"X-CSRF-Token": token})

    assert without.status_code == 403 and without.get_json()["error"]["code"] == "csrf"
    assert wrong.status_code == 403
    assert right.status_code == 503  # past auth and CSRF; no execution in this test


def test_a_non_ascii_csrf_token_is_refused_not_a_failure():
    client = make().test_client()
    login(client)
    resp = client.post("/api/killswitch", json={"enabled": True},
                       headers={"X-CSRF-Token": "caf\xe9"})
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "csrf"


def test_a_password_with_a_lone_surrogate_is_wrong_not_a_failure(caplog):
    caplog.set_level(logging.ERROR)
    for config in ({"DASHBOARD_PASSWORD": PASSWORD}, {"DASHBOARD_PASSWORD_HASH": HASHED}):
        client = create_app(HealthBook(), config).test_client()
        resp = client.post("/api/login", data='{"password": "\\ud800"}', headers=JSON)
        assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "bad_password"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_logout_ends_the_session():
    client = make().test_client()
    token = login(client).get_json()["csrf_token"]
    client.post("/api/logout", headers={"X-CSRF-Token": token})
    assert client.get("/api/health").status_code == 401


def test_a_request_in_flight_during_logout_does_not_log_the_browser_back_in():
    """A dashboard request sent with the session cookie just before "Log out" and answered just
    after must not send that cookie back: the browser would store it again and stay logged in
    (seen as a flaky dashboard test under load). Only a login sets the cookie."""
    client = make().test_client()
    token = login(client).get_json()["csrf_token"]
    cookie = client.get_cookie("gateway_session")
    assert cookie is not None

    late = client.application.test_client()
    late.set_cookie(cookie.key, cookie.value)
    client.post("/api/logout", headers={"X-CSRF-Token": token})

    answer = late.get("/api/health")  # carried the old cookie; answered after the logout
    assert answer.status_code == 200
    assert "gateway_session=" not in answer.headers.get("Set-Cookie", "")


def test_failed_logins_are_throttled_per_address():
    app = make(LOGIN_MAX_FAILURES=3, LOGIN_WINDOW_S=60)
    clock = FakeClock()
    app.extensions["gateway_auth"].throttle.clock = clock
    client = app.test_client()
    for _ in range(3):
        assert login(client, "guess", "10.0.0.1").status_code == 401

    blocked = login(client, PASSWORD, "10.0.0.1")
    other = login(client, PASSWORD, "10.0.0.2")
    clock.now += 61
    later = login(client, PASSWORD, "10.0.0.1")

    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    assert blocked.get_json()["error"]["code"] == "throttled"
    assert other.status_code == 200 and later.status_code == 200


def test_the_login_form_redirects_to_the_dashboard():
    client = make().test_client()
    assert client.post("/login", data={"password": "x"}).status_code == 401
    resp = client.post("/login", data={"password": PASSWORD})
    assert resp.status_code == 303 and resp.headers["Location"] == "/"
    assert client.get("/api/health").status_code == 200


def test_bearer_tokens_need_no_session_and_no_csrf():
    client = make().test_client()
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/api/health", headers=good).status_code == 200
    assert client.post("/api/killswitch", json={"enabled": True},
                       headers=good).status_code == 503
    assert client.get("/api/health", headers={"Authorization": "Bearer nope"}).status_code == 401


# --- without a password ----------------------------------------------------------------------


def test_without_a_password_only_loopback_host_names_are_answered():
    client = create_app(HealthBook()).test_client()
    assert client.get("/api/health").status_code == 200
    rebound = client.get("/api/health", headers={"Host": "evil.example:5000"})
    assert rebound.status_code == 403 and rebound.get_json()["error"]["code"] == "forbidden_host"


def test_without_a_password_a_forgeable_post_is_refused():
    client = create_app(HealthBook()).test_client()
    form_post = client.post("/api/bots/1/start", data="x=1",
                            content_type="application/x-www-form-urlencoded")
    json_post = client.post("/api/bots/1/start", json={})
    assert form_post.status_code == 403
    assert json_post.status_code == 503  # allowed through; no state service in this test


# --- WebSockets ----------------------------------------------------------------------------


@pytest.fixture
def secured(bus, endpoints, tmp_path):
    running = start_gateway(endpoints, tmp_path, DASHBOARD_PASSWORD=PASSWORD,
                            GATEWAY_API_TOKENS=f"other-token,{TOKEN}")
    yield running.service
    running.close()


def ws_url(service: GatewayService) -> str:
    return f"ws://127.0.0.1:{service.http.server_port}/ws"


def test_websocket_needs_the_session_or_a_token(secured: GatewayService):
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(secured), proxy=None, legacy=True)
    assert refused.value.response.status_code == 401

    with closing(connect(ws_url(secured), proxy=None, legacy=True,
                         additional_headers={"Authorization": f"Bearer {TOKEN}"})) as ws:
        assert '"hello"' in ws.recv(timeout=5)

    base = f"http://127.0.0.1:{secured.http.server_port}"
    req = urllib.request.Request(f"{base}/api/login", data=f'{{"password": "{PASSWORD}"}}'
                                 .encode(), headers=JSON, method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        cookie = resp.headers["Set-Cookie"].split(";", 1)[0]
    with closing(connect(ws_url(secured), proxy=None, legacy=True,
                         additional_headers={"Cookie": cookie})) as ws:
        assert '"hello"' in ws.recv(timeout=5)


def test_websocket_from_a_foreign_origin_is_refused(secured: GatewayService):
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(secured), proxy=None, legacy=True, origin="http://evil.example",
                additional_headers={"Authorization": f"Bearer {TOKEN}"})
    assert refused.value.response.status_code == 403


# --- secrets ---------------------------------------------------------------------------------


def test_no_secret_in_any_reply_or_log(caplog):
    app = create_app(HealthBook(), {"DASHBOARD_PASSWORD": PASSWORD, "API_TOKENS": TOKEN,
                                    "DASHBOARD_PASSWORD_HASH": HASHED})
    client = app.test_client()
    secrets = [PASSWORD, TOKEN, HASHED, app.config["SECRET_KEY"]]
    caplog.set_level(logging.DEBUG)
    replies = [login(client, "wrong"), login(client, "hashed-secret-pw"),
               client.get("/api/session"), client.get("/login"), client.get("/")]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for path, ops in document()["paths"].items():
        if "get" in ops and "{" not in path:
            replies.append(client.get(path, headers=auth))
    replies.append(client.get("/api/nope", headers=auth))

    for resp in replies:
        text = resp.get_data(as_text=True) + str(resp.headers)
        assert not [s for s in secrets if s in text], resp.request.path
    assert not [s for s in secrets if s in caplog.text]


def test_gateway_secrets_are_redacted_from_its_logs():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    redactor = None
    try:
        redactor = GatewayService._redact({"API_TOKENS": f"a-token-1,{TOKEN}",
                                           "SECRET_KEY": "k" * 32})
        logging.getLogger("x").warning("token %s and key %s", TOKEN, "k" * 32)
    finally:
        root.removeHandler(handler)
        for other in root.handlers:
            other.removeFilter(redactor)
    assert TOKEN not in stream.getvalue() and "k" * 32 not in stream.getvalue()
