"""Who may use the gateway: password login with a session cookie, CSRF, throttling, tokens.

Auth is on when a dashboard password (or its werkzeug hash) is configured. Then every route
but the public ones needs the session (set by ``POST /api/login``) or an
``Authorization: Bearer <token>`` from ``GATEWAY_API_TOKENS``. State-changing requests with a
session need ``X-CSRF-Token``. Failed logins are counted per client address and refused
with 429 for a while past a limit. With auth off the gateway listens on loopback only and
answers only loopback ``Host`` names (a DNS-rebinding guard); a state-changing request must
still be one a foreign web page cannot forge (a CSRF header or a JSON body).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

from flask import Flask, Request, request, session
from flask.sessions import SecureCookieSessionInterface
from werkzeug.security import check_password_hash

from services.gateway.errors import ApiError

log = logging.getLogger(__name__)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PUBLIC_PATHS = frozenset({"/", "/login", "/favicon.ico", "/api/session", "/api/login",
                          "/api/logout"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class AuthSettings:
    """The gateway's auth configuration; ``enabled`` when a password or hash is set."""

    password: str = field(default="", repr=False)
    password_hash: str = field(default="", repr=False)
    api_tokens: tuple[str, ...] = field(default=(), repr=False)
    max_failures: int = 5
    window_s: float = 300.0
    cookie_secure: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.password or self.password_hash)

    @classmethod
    def from_mapping(cls, values: dict) -> AuthSettings:
        tokens = values.get("API_TOKENS") or values.get("GATEWAY_API_TOKENS") or ()
        if isinstance(tokens, str):
            tokens = [t for t in (s.strip() for s in tokens.split(",")) if t]
        return cls(
            password=values.get("DASHBOARD_PASSWORD") or "",
            password_hash=values.get("DASHBOARD_PASSWORD_HASH") or "",
            api_tokens=tuple(tokens),
            max_failures=int(values.get("LOGIN_MAX_FAILURES", 5)),
            window_s=float(values.get("LOGIN_WINDOW_S", 300.0)),
            cookie_secure=str(values.get("GATEWAY_COOKIE_SECURE", "")).lower()
            in ("1", "yes", "true"),
        )

    def secrets(self) -> list[str]:
        return [s for s in (self.password, self.password_hash, *self.api_tokens) if s]


class LoginThrottle:
    """Failed logins per client address in a sliding window; past the limit, wait."""

    MAX_ADDRESSES = 10_000

    def __init__(self, max_failures: int, window_s: float, clock=time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after_s(self, address: str) -> float:
        """0 when ``address`` may try now, else the seconds until it may."""
        now = self.clock()
        with self._lock:
            failures = self._recent(address, now)
            if len(failures) < self.max_failures:
                return 0.0
            return max(0.0, failures[0] + self.window_s - now)

    def failed(self, address: str) -> None:
        now = self.clock()
        with self._lock:
            self._recent(address, now).append(now)
            self._failures.move_to_end(address)
            while len(self._failures) > self.MAX_ADDRESSES:
                self._failures.popitem(last=False)

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)

    def _recent(self, address: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(address, deque())
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        return failures


class SessionCookies(SecureCookieSessionInterface):
    """Flask's signed cookie session, ``Secure`` whenever the request came over https."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure


class Auth:
    """Checks every request; installed on the app by ``install``."""

    def __init__(self, settings: AuthSettings, clock=time.monotonic) -> None:
        self.settings = settings
        self.throttle = LoginThrottle(settings.max_failures, settings.window_s, clock)
        self._token_digests = tuple(_digest(t) for t in settings.api_tokens)

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def install(self, app: Flask) -> None:
        if not app.config.get("SECRET_KEY"):
            app.config["SECRET_KEY"] = secrets.token_hex(32)
        app.config.update(
            SESSION_COOKIE_NAME="gateway_session",
            SESSION_COOKIE_HTTPONLY=True,
            SESSION_COOKIE_SAMESITE="Strict",
            SESSION_COOKIE_SECURE=self.settings.cookie_secure,
            PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
            # The cookie is sent only when the session changes (a login, a first CSRF token).
            # Refreshing it on every answer let a request in flight during "Log out" send the
            # old session back, logging the browser in again; a session now lasts 12 hours
            # from the login, not from the last use.
            SESSION_REFRESH_EACH_REQUEST=False,
        )
        app.session_interface = SessionCookies()
        app.before_request(self.check_request)
        app.extensions["gateway_auth"] = self

    # --- per request ---------------------------------------------------------------------

    def check_request(self) -> None:
        """Refuse what is not allowed; raise ``ApiError`` (rendered as JSON)."""
        if not self.enabled:
            self._check_loopback_host()
        bearer = self.bearer_ok(request)
        if self.enabled and not bearer and not self._public(request.path):
            if not session.get("auth"):
                raise ApiError(401, "unauthorized", "log in or send a bearer token")
        if request.method in UNSAFE_METHODS and request.path.startswith("/api/") and not bearer:
            self._check_csrf()
        if request.headers.get("Upgrade", "").lower() == "websocket":
            self._check_origin()

    def bearer_ok(self, req: Request) -> bool:
        header = req.headers.get("Authorization", "")
        if not header.lower().startswith("bearer ") or not self._token_digests:
            return False
        candidate = _digest(header[7:].strip())
        found = False
        for digest in self._token_digests:  # no early exit: constant time over the list
            found |= hmac.compare_digest(candidate, digest)
        return found

    def _public(self, path: str) -> bool:
        return path in PUBLIC_PATHS or path.startswith("/static/")

    def _check_loopback_host(self) -> None:
        host = (request.host or "").rsplit(":", 1)[0] if "]" not in (request.host or "") \
            else request.host.split("]")[0].lstrip("[")
        if host not in LOOPBACK_HOSTS:
            raise ApiError(403, "forbidden_host",
                           "without a dashboard password only loopback host names are served")

    def _check_csrf(self) -> None:
        if request.path == "/api/login":
            self._check_origin()
            return
        sent = request.headers.get(CSRF_HEADER, "")
        expected = session.get("csrf", "")
        if self.enabled or (sent and expected):
            # as bytes: compare_digest refuses str with non-ASCII (a header may carry latin-1)
            if not (sent and expected and hmac.compare_digest(sent.encode(), expected.encode())):
                raise ApiError(403, "csrf", f"missing or wrong {CSRF_HEADER} header; "
                               "get the token from GET /api/session")
        elif not sent and not request.is_json:
            raise ApiError(403, "csrf", f"send a JSON body or the {CSRF_HEADER} header")

    def _check_origin(self) -> None:
        origin = request.headers.get("Origin")
        if origin and urlsplit(origin).netloc != request.host:
            raise ApiError(403, "forbidden_origin", "cross-site request refused")

    # --- session -------------------------------------------------------------------------

    def csrf_token(self) -> str:
        if not session.get("csrf"):
            session["csrf"] = secrets.token_urlsafe(32)
        return session["csrf"]

    def session_view(self) -> dict:
        return {"auth_required": self.enabled,
                "authenticated": (not self.enabled) or bool(session.get("auth"))
                or self.bearer_ok(request),
                "csrf_token": self.csrf_token()}

    def login(self, password: str) -> dict:
        """Start a session for the right password; ``ApiError`` 401 or 429 otherwise."""
        address = request.remote_addr or "?"
        wait_s = self.throttle.retry_after_s(address)
        if wait_s > 0:
            raise ApiError(429, "throttled", "too many failed logins; try again later",
                           headers={"Retry-After": str(int(wait_s) + 1)})
        if not self.enabled:
            return self.session_view()
        if not self._password_ok(password):
            self.throttle.failed(address)
            log.warning("failed dashboard login from %s", address)
            raise ApiError(401, "bad_password", "wrong password", {"password": "wrong password"})
        self.throttle.succeeded(address)
        session.clear()
        session.permanent = True
        session["auth"] = True
        session["csrf"] = secrets.token_urlsafe(32)
        log.info("dashboard login from %s", address)
        return self.session_view()

    def logout(self) -> dict:
        session.clear()
        return {"auth_required": self.enabled, "authenticated": not self.enabled,
                "csrf_token": self.csrf_token()}

    def websocket_allowed(self) -> bool:
        return (not self.enabled) or bool(session.get("auth")) or self.bearer_ok(request)

    def _password_ok(self, password: str) -> bool:
        if not isinstance(password, str) or not password:
            return False
        try:
            given = password.encode()
        except UnicodeEncodeError:  # a lone surrogate (JSON "\ud800") is no one's password
            return False
        if self.settings.password_hash:
            try:
                return check_password_hash(self.settings.password_hash, password)
            except (ValueError, TypeError):
                log.error("DASHBOARD_PASSWORD_HASH is not a werkzeug password hash")
                return False
        return hmac.compare_digest(given, self.settings.password.encode())


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
