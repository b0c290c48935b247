"""Reading and checking HTTP input: every bad field is collected, then one 400 names them all."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from flask import Request

from services.gateway.errors import ApiError, invalid

SYMBOL = re.compile(r"^[A-Za-z0-9]{2,20}$")  # upper-cased once read
MAX_INT = 2**53
MAX_DEPTH = 16


class Form:
    """Collects per-field problems while reading query or body values."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.problems: dict[str, str] = {}

    def integer(self, name: str, default: int | None = None, lo: int = 1,
                hi: int = MAX_INT) -> int | None:
        raw = self.values.get(name)
        if raw is None:
            return default
        value = to_int(raw)
        if value is None or not lo <= value <= hi:
            self.problems[name] = f"an integer from {lo} to {hi}"
            return default
        return value

    def text(self, name: str, default: str = "", pattern: re.Pattern | None = None,
             choices: tuple[str, ...] = (), upper: bool = False, max_len: int = 200) -> str:
        raw = self.values.get(name)
        if raw is None or raw == "":
            return default
        if not isinstance(raw, str) or len(raw) > max_len:
            self.problems[name] = f"a string of at most {max_len} characters"
            return default
        value = raw.upper() if upper else raw
        if choices and value not in choices:
            self.problems[name] = f"one of {', '.join(choices)}"
            return default
        if pattern is not None and not pattern.match(value):
            self.problems[name] = f"must match {pattern.pattern}"
            return default
        return value

    def boolean(self, name: str) -> bool | None:
        raw = self.values.get(name)
        if not isinstance(raw, bool):
            self.problems[name] = "true or false"
            return None
        return raw

    def mapping(self, name: str, required: bool = False) -> dict[str, Any]:
        raw = self.values.get(name)
        if raw is None and not required:
            return {}
        if not isinstance(raw, dict):
            self.problems[name] = "an object of name: value"
            return {}
        problem = plain_problem(raw)
        if problem:
            self.problems[name] = problem
            return {}
        return raw

    def require(self, *names: str) -> None:
        for name in names:
            if self.values.get(name) in (None, "") and name not in self.problems:
                self.problems[name] = "required"

    def done(self) -> None:
        if self.problems:
            raise invalid(dict(self.problems))


def plain_problem(value: Any, depth: int = 0) -> str:
    """Why ``value`` cannot travel to a backend (too deep, a huge or non-finite number)."""
    if depth > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return ""
    if isinstance(value, int):
        return "" if -(2**63) <= value < 2**63 else "an integer out of the 64-bit range"
    if isinstance(value, float):
        return "" if math.isfinite(value) else "numbers must be finite"
    items = value.values() if isinstance(value, dict) else value
    for item in items:
        problem = plain_problem(item, depth + 1)
        if problem:
            return problem
    return ""


def to_int(raw: Any) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer() and abs(raw) <= MAX_INT:
        return int(raw)  # JSON Schema counts 400.0 as an integer
    if isinstance(raw, str) and re.fullmatch(r"-?[0-9]{1,16}", raw):
        return int(raw)
    return None


def query(request: Request) -> Form:
    return Form(request.args.to_dict())


def body(request: Request, optional: bool = False) -> Form:
    """The JSON object body; an empty body counts as ``{}`` when ``optional``."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if optional:
            return Form({})
        raise invalid({"body": "a JSON object is required"}, "missing body")
    data = read_json(request)
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object",
                       {"body": "a JSON object"})
    return Form(data)


def read_json(request: Request) -> Any:
    """The parsed JSON body, or None when it is not JSON (too deep counts as not JSON)."""
    try:
        return json.loads(request.get_data(cache=True))
    except (ValueError, RecursionError):
        return None


def bot_id(raw: str) -> int:
    value = to_int(raw)
    if value is None or not 1 <= value <= MAX_INT:
        raise invalid({"id": "a bot id: a positive integer"})
    return value
