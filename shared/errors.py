"""One exception hierarchy for the whole system: callers catch meaning, not library types.

Binance error codes are translated into these once, at the edge (execution, simulator client).
"""

from __future__ import annotations


class TradingBotError(Exception):
    """Base of every error the project raises on purpose."""


class ConfigError(TradingBotError):
    """Configuration is invalid; ``problems`` lists one readable line per bad variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n  " + "\n  ".join(self.problems))


class ValidationError(TradingBotError):
    """Input was refused; ``fields`` maps each bad field to what is allowed."""

    def __init__(self, fields: dict[str, str], message: str = "invalid input") -> None:
        self.fields = dict(fields)
        detail = "; ".join(f"{k}: {v}" for k, v in self.fields.items())
        super().__init__(f"{message}: {detail}" if detail else message)


class CodecError(TradingBotError):
    """A message could not be encoded or decoded (unknown type, bad field, bad bytes)."""


class TemporaryError(TradingBotError):
    """Worth retrying later: a peer is away, a timeout, a 5xx."""


class RequestTimeout(TemporaryError):
    """A request/reply call got no answer within its timeout after every retry."""


class RemoteError(TradingBotError):
    """The peer answered with an error; ``code`` is machine-readable, the text is for people."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


class ExchangeError(TradingBotError):
    """The exchange refused or failed a call; ``code`` is Binance's numeric code when known."""

    def __init__(self, message: str, code: int | None = None) -> None:
        self.code = code
        super().__init__(message if code is None else f"[{code}] {message}")


class InvalidOrderError(ExchangeError):
    """The order breaks a symbol filter or a rule (-1013, -1111, ...): do not retry as is."""


class InsufficientFundsError(ExchangeError):
    """Not enough free balance (-2010): do not retry."""


class UnknownOrderError(ExchangeError):
    """The exchange does not know the order (-2013, -2011)."""


class RateLimitError(TemporaryError, ExchangeError):
    """429: wait ``retry_after_s`` before the next call."""

    def __init__(self, message: str, retry_after_s: float, code: int | None = 429) -> None:
        self.retry_after_s = retry_after_s
        ExchangeError.__init__(self, message, code)


class IpBannedError(ExchangeError):
    """418: trading must halt until the ban lifts."""


class ClockSkewError(TemporaryError, ExchangeError):
    """-1021: local time is outside recvWindow; resynchronise the offset and retry once."""


class UnknownStatusError(TemporaryError, ExchangeError):
    """-1007 or a 5xx: the order may or may not exist; ask for it by client id first."""


class RiskRejected(TradingBotError):
    """An intent was refused by a risk rule; the message says which, in words a user reads."""


class StaleLeaseError(TradingBotError):
    """A bot's lease epoch is older than the current owner's: the caller must stop trading it."""
