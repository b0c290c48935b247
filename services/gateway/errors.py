"""The gateway's one error type and the JSON shape every error reply has."""

from __future__ import annotations


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    """``{"error": {"code", "message", "fields"}}``: the stable shape scripts rely on."""
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


class ApiError(Exception):
    """An HTTP error answer: status, machine-readable code, text, and per-field messages."""

    def __init__(self, status: int, code: str, message: str,
                 fields: dict[str, str] | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = dict(fields or {})
        self.headers = dict(headers or {})

    def body(self) -> dict:
        return error_body(self.code, self.message, self.fields)


def invalid(fields: dict[str, str], message: str = "invalid input") -> ApiError:
    return ApiError(400, "invalid", message, fields)
