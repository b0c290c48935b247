"""Keep one service process alive under honcho: ``python -m shared.supervise services.<name>``.

honcho stops every process as soon as one exits. So that a single service can crash or be
SIGKILLed and come back while the others carry on (as under docker compose's restart
policy), each Procfile line runs its service through this small supervisor. It:

- starts ``python -m <module>`` as a child with the same environment and output;
- forwards SIGTERM/SIGINT to the child and exits with its code once it has stopped
  (SIGKILL after ``STOP_GRACE_S``);
- forwards SIGHUP (the service restarts itself in place);
- restarts a child that died on its own, with backoff 0.5 s doubling to 8 s (reset after
  30 s of good running), except after exit code 2: a configuration error that a restart
  cannot fix, which ends the supervisor too.

It imports nothing from the project, so it starts in milliseconds.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

STOP_GRACE_S = 3.0  # services must stop within 2 s; past 3 s the child is killed
BACKOFF_S = (0.5, 8.0)
HEALTHY_AFTER_S = 30.0
CONFIG_ERROR = 2


class Supervisor:
    """Runs one child process and restarts it until told to stop."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.child: subprocess.Popen | None = None
        self.stopping = False

    def _say(self, text: str) -> None:
        print(f"supervise[{self.module}]: {text}", file=sys.stderr, flush=True)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum != signal.SIGHUP:
            self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        delay = BACKOFF_S[0]
        while True:
            started = time.monotonic()
            self.child = subprocess.Popen([sys.executable, "-m", self.module])
            code = self._wait()
            if self.stopping:
                return code
            if code == CONFIG_ERROR:
                self._say("configuration error: not restarting")
                return code
            if time.monotonic() - started >= HEALTHY_AFTER_S:
                delay = BACKOFF_S[0]
            self._say(f"exited with {code}; restarting in {delay:.1f} s")
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not self.stopping:
                time.sleep(0.05)
            if self.stopping:
                return code
            delay = min(delay * 2, BACKOFF_S[1])

    def _wait(self) -> int:
        assert self.child is not None
        while True:
            try:
                code = self.child.wait(timeout=0.2)
                return code if code >= 0 else 128 - code
            except subprocess.TimeoutExpired:
                if self.stopping:
                    return self._stop_child()

    def _stop_child(self) -> int:
        assert self.child is not None
        self.child.send_signal(signal.SIGTERM)  # again is harmless; it may have missed the first
        try:
            code = self.child.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self._say(f"did not stop within {STOP_GRACE_S} s: killing it")
            self.child.kill()
            code = self.child.wait()
        return code if code >= 0 else 128 - code


def main() -> None:
    if len(sys.argv) != 2 or not sys.argv[1].startswith("services."):
        print("usage: python -m shared.supervise services.<name>", file=sys.stderr)
        sys.exit(CONFIG_ERROR)
    sys.exit(Supervisor(sys.argv[1]).run())


if __name__ == "__main__":
    main()
