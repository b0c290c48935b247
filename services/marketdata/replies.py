"""A reply server whose handler may answer later: it returns a Future, the reply follows.

ROUTER sockets may answer in any order, so a slow history request (REST paging) does not hold
up heartbeats or other requests. Only the service thread touches the socket: ``flush`` sends
the replies whose futures are done.
"""

from __future__ import annotations

import concurrent.futures
import logging

from shared.bus import ReplyServer
from shared.codec import encode
from shared.errors import IpBannedError, RateLimitError, TradingBotError, ValidationError
from shared.messages import Reply

log = logging.getLogger(__name__)


class DeferredReplyServer(ReplyServer):
    """``ReplyServer`` plus parked requests answered by ``flush`` when their future is done."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._parked: list[tuple[list[bytes], concurrent.futures.Future]] = []

    @property
    def pending(self) -> int:
        return len(self._parked)

    def _answer(self, frames: list[bytes]) -> None:
        if len(frames) < 3:
            super()._answer(frames)
            return
        envelope, body = frames[:-1], frames[-1]
        reply = self._handle(body)
        if isinstance(reply.result, concurrent.futures.Future):
            self._parked.append((envelope, reply.result))
            return
        self._sock.send_multipart([*envelope, encode(reply)])

    def flush(self) -> int:
        """Send the replies that are ready; return how many."""
        ready = [p for p in self._parked if p[1].done()]
        if not ready:
            return 0
        self._parked = [p for p in self._parked if not p[1].done()]
        for envelope, future in ready:
            self._sock.send_multipart([*envelope, encode(reply_of(future))])
        return len(ready)


def reply_of(future: concurrent.futures.Future) -> Reply:
    """The ``Reply`` for a finished future, mapping errors like ``ReplyServer`` does."""
    try:
        result = future.result()
    except ValidationError as exc:
        return Reply(ok=False, error_code="invalid", error_message=str(exc), fields=exc.fields)
    except RateLimitError as exc:
        return Reply(ok=False, error_code="rate_limited",
                     error_message=f"{exc}; retry in {exc.retry_after_s:.0f} s")
    except IpBannedError as exc:
        return Reply(ok=False, error_code="ip_banned", error_message=str(exc))
    except TradingBotError as exc:
        code = getattr(exc, "code", None) or type(exc).__name__
        return Reply(ok=False, error_code=str(code), error_message=str(exc))
    except TimeoutError:
        return Reply(ok=False, error_code="timeout", error_message="history took too long")
    except Exception as exc:
        log.error("deferred request failed: %s: %s", type(exc).__name__, exc)
        return Reply(ok=False, error_code="internal", error_message=type(exc).__name__)
    return result if isinstance(result, Reply) else Reply(ok=True, result=result)
