"""The whole stack as a user runs it (``make run``: honcho over the Procfile): cold start and
stop times, and the memory of every process of the stack at idle and while bots trade.

- Cold start: from launching ``honcho start`` (fresh DATA_DIR, own ports and ipc sockets,
  default environment, so one strategy worker) until ``/api/health`` reports every service
  up; the median of ``STARTS`` launches. Stop: from SIGTERM to honcho (what Ctrl-C in
  ``make run`` amounts to) until every process of the stack has exited.
- Memory: one more launch with ``SIM_SPEED`` raised so the market moves fast. RSS (and PSS,
  which splits shared pages between the processes that share them, so its sum does not count
  them twice) of every process in honcho's tree, read from /proc: honcho and the process it
  forks per Procfile line, the ``shared.supervise`` supervisors and the services. Sampled
  once after ``SETTLE_S`` of idle (no bots), then every second while ``BOTS`` bots trade on
  the simulator for ``LOAD_S``; the peak total and its per-service breakdown are reported,
  with the orders and fills the venue saw in that window.

``run()`` returns ``(name, value, unit)`` rows for ``make bench``; every process started is
stopped, and killed when a run fails half-way.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from shared.supervise import STOP_GRACE_S
from tests.chaos.driver import SYMBOLS, start_bots
from tests.chaos.stack import ROOT, ChaosStack, VenueClient
from tests.conftest import kill_leftovers
from tests.conftest import wait_until as wait_for
from tests.system.test_procfile import all_up

STARTS = 3
SETTLE_S = 10.0
LOAD_S = 45.0
BOTS = 6
SIM_SPEED = 60
START_TIMEOUT_S = 90.0  # generous: the machine may be busy
STOP_TIMEOUT_S = 20.0
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


# --- /proc ----------------------------------------------------------------------------------

def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time in clock ticks) of ``pid``, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(fields[1]), fields[0], int(fields[19])


def _alive(pid: int, started: int) -> bool:
    """The same process (not a reused pid) still exists and is not a zombie."""
    st = _stat(pid)
    return st is not None and st[1] != "Z" and st[2] == started


def tree(root: int) -> dict[int, int]:
    """``pid -> start time`` of ``root`` and all its descendants (zombies left out)."""
    children: dict[int, list[int]] = defaultdict(list)
    info: dict[int, tuple[int, str, int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            info[int(entry.name)] = st
            children[st[0]].append(int(entry.name))
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in info and info[pid][1] != "Z":
            out[pid] = info[pid][2]
            todo += children.get(pid, [])
    return out


def _memory_kib(pid: int) -> tuple[int, int] | None:
    """(RSS, PSS) of ``pid`` in KiB."""
    try:
        rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB
        pss = next(int(line.split()[1]) for line in
                   Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
                   if line.startswith("Pss:"))
    except (OSError, StopIteration, ValueError):
        return None
    return rss, pss


def _role(pid: int) -> tuple[str, str] | None:
    """(group, role) from the command line: ``("strategy", "service")``,
    ``("strategy", "supervisor")``, ``("honcho", "honcho")``; None when not recognised.
    (honcho runs each Procfile line from a process it forks, with honcho's command line.)"""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        argv = argv.rstrip("\0").split("\0")
    except OSError:
        return None
    if "shared.supervise" in argv and argv[-1].startswith("services."):
        return argv[-1].removeprefix("services."), "supervisor"
    if "-m" in argv and (i := argv.index("-m")) + 1 < len(argv):
        module = argv[i + 1]
        if module.startswith("services."):
            return module.split(".")[1], "service"
        if module == "honcho":
            return "honcho", "honcho"
    return None


def sample(root: int) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """``(group, role) -> [(rss, pss) KiB per process]`` over the tree under ``root``; an
    unrecognised process (a shell, a helper a service started) counts with its parent."""
    pids = tree(root)
    parents = {pid: (st[0] if (st := _stat(pid)) else 0) for pid in pids}
    out: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    labels: dict[int, tuple[str, str]] = {}

    def label(pid: int) -> tuple[str, str]:
        if pid not in labels:
            labels[pid] = _role(pid) or (label(parents[pid]) if parents.get(pid) in pids
                                         else ("other", "other"))
        return labels[pid]

    for pid in pids:
        if (mem := _memory_kib(pid)) is not None:
            group, role = label(pid)
            out[group, "honcho line" if role == "honcho" and pid != root else role].append(mem)
    return out


def total(snap: dict, index: int = 0) -> int:
    return sum(m[index] for mems in snap.values() for m in mems)


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


# --- the stack under honcho -------------------------------------------------------------------

class HonchoStack:
    """``honcho start`` over the Procfile in a temp dir (ports, ipc sockets, DATA_DIR from
    :class:`ChaosStack`); :meth:`close` always leaves no process behind."""

    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-stack-"))
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # `python`
        self.stack = ChaosStack(self.tmp, workers=1, extra_env={"PATH": path, **(extra_env or {})})
        self.proc: subprocess.Popen | None = None
        self.seen: dict[int, int] = {}  # every pid of the stack seen, with its start time
        self.killed: list[str] = []  # services their supervisor killed on stop (past grace)
        self.restarted: list[str] = []  # services that exited by themselves while running

    def start(self) -> float:
        """Launch honcho; seconds until every service reports up."""
        self.stack.data_dir.mkdir(parents=True)
        with open(self.tmp / "honcho.log", "w") as log:
            started = time.monotonic()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "honcho", "start", "-f", str(ROOT / "Procfile"),
                 "-d", str(ROOT)],
                cwd=ROOT, env=self.stack.env(), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        try:
            wait_for(self._up, START_TIMEOUT_S, "every service healthy")
        finally:
            self.remember()
        return time.monotonic() - started

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"honcho exited with {self.proc.returncode}")
        return bool(all_up(self.stack.gateway_port))

    def remember(self) -> dict[int, int]:
        if self.proc is not None:
            self.seen |= tree(self.proc.pid)
        return self.seen

    def stop(self) -> float:
        """SIGTERM to honcho; seconds until every process of the stack has exited."""
        assert self.proc is not None
        pids = self.remember().copy()
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=STOP_TIMEOUT_S)
        wait_for(lambda: not any(_alive(p, t) for p, t in pids.items()), STOP_TIMEOUT_S,
                 "every process of the stack to exit")
        took = time.monotonic() - started
        for line in self.log_tail(100_000).splitlines():  # a service killed or restarted
            if "supervise[" in line:
                print(f"stack bench: {line}", file=sys.stderr)
            name = line.partition("supervise[services.")[2].partition("]")[0]
            if "did not stop within" in line:
                self.killed.append(name)
            elif "exited with" in line:
                self.restarted.append(name)
        return took

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return (self.tmp / "honcho.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def close(self) -> None:
        """Kill whatever is left, top of the tree first (so no supervisor restarts a child),
        each with its process group (a supervisor's session holds its service); then any
        process still carrying this stack's DATA_DIR, in case one was forked meanwhile."""
        self.remember()
        order = sorted(self.seen.items(), key=lambda item: item[1])  # older (parents) first
        for pid, started in order:
            if _alive(pid, started):
                _kill_with_group(pid)
        marker = f"DATA_DIR={self.stack.data_dir}".encode()
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and marker in (entry / "environ").read_bytes().split(
                        b"\0"):
                    _kill_with_group(int(entry.name))
            except OSError:
                continue
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
        kill_leftovers(self.stack.data_dir / "run")
        shutil.rmtree(self.tmp, ignore_errors=True)


def _kill_with_group(pid: int) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def venue_counts(venue: VenueClient) -> tuple[int, int]:
    """(orders, fills) of the sim account over every symbol the bots trade."""
    orders = sum(len(venue.all_orders(s)) for s in SYMBOLS)
    fills = sum(len(venue.my_trades(s)) for s in SYMBOLS)
    return orders, fills


# --- the runs ---------------------------------------------------------------------------------

def cold_starts() -> tuple[list[float], list[float], list[str]]:
    starts, stops, killed = [], [], []
    for _ in range(STARTS):
        stack = HonchoStack()
        try:
            starts.append(stack.start())
            stops.append(stack.stop())
            killed += stack.killed
        except Exception:
            print(stack.log_tail(), file=sys.stderr)
            raise
        finally:
            stack.close()
    return starts, stops, killed


def memory_run() -> dict:
    stack = HonchoStack({"SIM_SPEED": str(SIM_SPEED), "SIM_SEED": "1"})
    try:
        stack.start()
        time.sleep(SETTLE_S)
        root = stack.proc.pid
        idle = sample(root)
        venue = VenueClient(stack.stack.sim_url)
        before = venue_counts(venue)
        start_bots(stack.stack, BOTS, prefix="bench")
        peak, end = idle, time.monotonic() + LOAD_S
        while time.monotonic() < end:
            time.sleep(1.0)
            snap = sample(root)
            if total(snap) > total(peak) or peak is idle:
                peak = snap
        after = venue_counts(venue)
        healthy = bool(all_up(stack.stack.gateway_port))
        stop_s = stack.stop()
    except Exception:
        print(stack.log_tail(), file=sys.stderr)
        raise
    finally:
        stack.close()
    return {"idle": idle, "peak": peak, "orders": after[0] - before[0],
            "fills": after[1] - before[1], "healthy": healthy, "stop_s": stop_s,
            "killed": stack.killed, "restarted": stack.restarted}


def counted(snap: dict) -> str:
    roles = defaultdict(int)
    for (_, role), mems in snap.items():
        roles[role] += len(mems)
    return ", ".join(f"{roles[r]} {name}" for r, name in (
        ("honcho", "honcho"), ("honcho line", "honcho per-line"),
        ("supervisor", "supervisors"), ("service", "services"), ("other", "other")) if roles[r])


def run() -> list[tuple[str, str, str]]:
    starts, stops, killed = cold_starts()
    mem = memory_run()
    idle, peak = mem["idle"], mem["peak"]

    def listed(values: list[float]) -> str:
        return ", ".join(f"{v:.2f}" for v in values)

    def grace(names: list[str]) -> str:
        return f"; killed past the {STOP_GRACE_S:g} s grace: {', '.join(names) or 'none'}"

    rows = [
        (f"stack cold start, `honcho start` to every service up in /api/health "
         f"(median of {STARTS}; runs {listed(starts)})", f"{statistics.median(starts):.2f}", "s"),
        (f"stack stop, SIGTERM to honcho until every process exited, right after start "
         f"(median of {STARTS}; runs {listed(stops)}{grace(killed)})",
         f"{statistics.median(stops):.2f}", "s"),
        (f"stack stop after the load run ({BOTS} bots trading{grace(mem['killed'])})",
         f"{mem['stop_s']:.2f}", "s"),
        (f"stack RSS / PSS at idle, {SETTLE_S:.0f} s after up, no bots (SIM_SPEED {SIM_SPEED}); "
         f"{sum(len(v) for v in idle.values())} processes: {counted(idle)}",
         f"{mib(total(idle))} / {mib(total(idle, 1))}", "MiB"),
        (f"stack RSS / PSS peak, {BOTS} bots trading for {LOAD_S:.0f} s (sampled each second)",
         f"{mib(total(peak))} / {mib(total(peak, 1))}", "MiB"),
        (f"load window: orders / fills at the venue ({BOTS} bots, {LOAD_S:.0f} s at "
         f"SIM_SPEED {SIM_SPEED}; all services up at its end: {'yes' if mem['healthy'] else 'NO'}"
         f"; restarted by their supervisor: {', '.join(mem['restarted']) or 'none'})",
         f"{mem['orders']} / {mem['fills']}", "orders / fills"),
    ]
    groups = sorted({g for g, _ in peak} - {"honcho"}) + ["honcho"]
    for group in groups:
        parts = [(role, peak.get((group, role), [])) for role in
                 ("service", "supervisor", "honcho", "honcho line", "other")]
        parts = [(role, mems) for role, mems in parts if mems]
        if not parts:
            continue
        value = " / ".join(mib(sum(m[0] for m in mems)) for _, mems in parts)
        what = " / ".join(f"{role}" + (f" x{len(mems)}" if len(mems) > 1 else "")
                          for role, mems in parts)
        rows.append((f"stack RSS at the load peak: {group} ({what})", value, "MiB"))
    return rows


if __name__ == "__main__":
    for row in run():
        print(" | ".join(row))
