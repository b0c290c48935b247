"""Binance's error replies: ``{"code": int, "msg": str}`` with an HTTP status and headers.

Every refusal inside the simulator raises :class:`ApiError`; the server turns it into the
reply Binance would send. The helpers name the errors the way Binance's ``errors.md`` does.
"""

from __future__ import annotations

from shared.errors import ExchangeError


class ApiError(Exception):
    """A Binance error reply: HTTP ``status``, Binance ``code``, ``msg`` and extra headers."""

    def __init__(self, status: int, code: int, msg: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {msg}")
        self.status = status
        self.code = code
        self.msg = msg
        self.headers = dict(headers or {})

    def body(self) -> dict:
        return {"code": self.code, "msg": self.msg}

    @classmethod
    def from_exchange_error(cls, exc: ExchangeError) -> ApiError:
        """The reply for an error raised by the matching engine or the filters (HTTP 400)."""
        code = exc.code if exc.code is not None else -1000
        msg = getattr(exc, "msg", None) or str(exc)
        return cls(400, code, msg)


def mandatory(name: str) -> ApiError:
    return ApiError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, "
                                "or malformed.")


def illegal_value(name: str) -> ApiError:
    return ApiError(400, -1100, f"Illegal characters found in parameter '{name}'; legal range "
                                "is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.")


def invalid_parameter(name: str) -> ApiError:
    return ApiError(400, -1130, f"Invalid data sent for a parameter: {name}.")


def bad_symbol() -> ApiError:
    return ApiError(400, -1121, "Invalid symbol.")


def bad_interval() -> ApiError:
    return ApiError(400, -1120, "Invalid interval.")


def bad_signature() -> ApiError:
    return ApiError(400, -1022, "Signature for this request is not valid.")


def bad_api_key_format() -> ApiError:
    return ApiError(401, -2014, "API-key format invalid.")


def rejected_api_key() -> ApiError:
    return ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")


def unknown_status() -> ApiError:
    return ApiError(503, -1007, "Timeout waiting for response from backend server. Send status "
                                "unknown; execution status unknown.")


def internal_error() -> ApiError:
    return ApiError(500, -1000, "An unknown error occurred while processing the request.")
