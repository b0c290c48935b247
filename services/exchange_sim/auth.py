"""API keys and request signing as Binance checks them: key header, HMAC-SHA256, timestamps.

REST: the signature covers the raw query string followed by the raw body, exactly as sent,
minus the ``signature`` parameter; nothing is re-sorted or re-encoded. WebSocket API: the
signature covers the sorted ``key=value`` pairs of the request's params, url-encoded.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from urllib.parse import urlencode

from shared.clock import Clock

from .api_error import (
    ApiError,
    bad_api_key_format,
    bad_signature,
    mandatory,
    rejected_api_key,
)

MAX_RECV_WINDOW_MS = 60_000
DEFAULT_RECV_WINDOW_MS = 5_000
AHEAD_TOLERANCE_MS = 1_000
_KEY_FORMAT = re.compile(r"^[\x21-\x7e]{1,128}$")


@dataclass(frozen=True)
class ApiKey:
    """One key pair and the account it trades for."""

    account: str
    api_key: str
    api_secret: str

    def __repr__(self) -> str:  # never print the secret
        return f"ApiKey(account={self.account!r}, api_key={self.api_key!r})"


def sign(secret: str, payload: str) -> str:
    """Lowercase hex HMAC-SHA256 of ``payload`` with ``secret`` (what clients send)."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def strip_signature(raw: str) -> tuple[str, str | None]:
    """``raw`` without its ``signature=`` parameter, and that parameter's value."""
    kept, signature = [], None
    for part in raw.split("&") if raw else []:
        if part.startswith("signature="):
            signature = part[len("signature="):]
        else:
            kept.append(part)
    return "&".join(kept), signature


class Authenticator:
    """Knows the key pairs; checks keys, signatures and timestamps of signed requests."""

    def __init__(self, keys: list[ApiKey], clock: Clock) -> None:
        self._keys = {k.api_key: k for k in keys}
        self._clock = clock

    def key_for(self, api_key: str | None) -> ApiKey:
        """The key pair of ``api_key``; -2014 if missing or malformed, -2015 if unknown."""
        if not api_key or not _KEY_FORMAT.match(api_key):
            raise bad_api_key_format()
        key = self._keys.get(api_key)
        if key is None:
            raise rejected_api_key()
        return key

    def verify_rest(self, api_key: str | None, query: str, body: str,
                    params: dict[str, str]) -> ApiKey:
        """Check a signed REST request; returns its key pair or raises ApiError."""
        key = self.key_for(api_key)
        query_payload, query_sig = strip_signature(query)
        body_payload, body_sig = strip_signature(body)
        signature = query_sig if query_sig is not None else body_sig
        if not signature:
            raise mandatory("signature")
        self.check_timestamp(params)
        if not hmac.compare_digest(sign(key.api_secret, query_payload + body_payload),
                                   signature.lower()):
            raise bad_signature()
        return key

    def verify_ws(self, params: dict) -> ApiKey:
        """Check a ``*.signature`` WebSocket API request's params (apiKey, timestamp, signature)."""
        key = self.key_for(params.get("apiKey"))
        signature = params.get("signature")
        if not signature:
            raise mandatory("signature")
        self.check_timestamp({k: str(v) for k, v in params.items()})
        payload = urlencode(sorted((k, v) for k, v in params.items() if k != "signature"))
        if not hmac.compare_digest(sign(key.api_secret, payload), str(signature).lower()):
            raise bad_signature()
        return key

    def check_timestamp(self, params: dict[str, str]) -> None:
        """-1021 unless ``timestamp`` is within ``recvWindow`` behind and 1 s ahead of now."""
        raw_ts = params.get("timestamp")
        if not raw_ts:
            raise mandatory("timestamp")
        try:
            timestamp = int(Decimal(raw_ts))
            recv_window = Decimal(params.get("recvWindow") or DEFAULT_RECV_WINDOW_MS)
        except (InvalidOperation, ValueError):
            raise mandatory("timestamp") from None
        if recv_window <= 0 or recv_window > MAX_RECV_WINDOW_MS:
            raise ApiError(400, -1131, "recvWindow must be less than 60000.")
        now_ms = self._clock.time_ms()
        if timestamp >= now_ms + AHEAD_TOLERANCE_MS:
            raise ApiError(400, -1021, "Timestamp for this request was 1000ms ahead of the "
                                       "server's time.")
        if now_ms - timestamp > recv_window:
            raise ApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
