"""Reading Binance request parameters: mandatory fields, decimals, enums, ints.

Each reader raises the :class:`ApiError` Binance answers for that kind of bad input.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal

from .api_error import ApiError, illegal_value, invalid_parameter, mandatory

_DECIMAL = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")


class Params:
    """The merged query and body parameters of one request (query wins, like Binance)."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def __contains__(self, name: str) -> bool:
        return bool(self.values.get(name))

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.values.get(name)
        return value if value not in (None, "") else default

    def required(self, name: str) -> str:
        value = self.text(name)
        if value is None:
            raise mandatory(name)
        return value

    def decimal(self, name: str, required: bool = False) -> Decimal | None:
        value = self.required(name) if required else self.text(name)
        if value is None:
            return None
        if not _DECIMAL.match(value):
            raise illegal_value(name)
        return Decimal(value)

    def integer(self, name: str, default: int | None = None, lo: int | None = None,
                hi: int | None = None) -> int | None:
        value = self.text(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ApiError(400, -1100, f"Illegal characters found in parameter '{name}'; "
                                       "legal range is '^[0-9]{1,20}$'.") from None
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            raise invalid_parameter(name)
        return number

    def choice(self, name: str, allowed: tuple[str, ...], error: ApiError | None = None,
               required: bool = False, default: str | None = None) -> str | None:
        value = self.required(name) if required else self.text(name, default)
        if value is not None and value not in allowed:
            raise error or invalid_parameter(name)
        return value

    def symbols(self) -> list[str] | None:
        """The ``symbols`` JSON array parameter, if sent."""
        raw = self.text("symbols")
        if raw is None:
            return None
        try:
            names = json.loads(raw)
        except ValueError:
            raise invalid_parameter("symbols") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise invalid_parameter("symbols")
        return names
