"""The recorder supervisor of a data directory: keeps one `ledgerbus record` running beside the server
that `ledgerbus up` started, restarting it (with backoff) whenever it dies, until `ledgerbus down`.

    python -m ledgerbus.cli.supervisor --data-dir D --url URL --ledger FILE --prefix P

It is a small detached process of its own (its own session, so closing the terminal does not stop it),
with its state in `<data-dir>/recorder.json` and the recorder's output in `<data-dir>/recorder.log`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ledgerbus.bus.server import pid_alive, process_runs
from ledgerbus.cli.record_cmd import SUPERVISOR_ENV
from ledgerbus.errors import ServerError
from ledgerbus.eventstore.recorder_lock import lock_holder

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

STATE = "recorder.json"
LOG = "recorder.log"
_MARKER = "ledgerbus.cli.supervisor"  # in the supervisor's command line

# A recorder that ran this long before dying was healthy: its next restart starts the backoff over.
HEALTHY_AFTER = 30.0


def restart_delay(failures: int, *, first: float = 0.5, cap: float = 10.0) -> float:
    """Seconds to wait before restarting a recorder that died `failures` times in a row (1, 2, ...)."""
    if failures <= 0:
        return 0.0
    return min(first * 2 ** (failures - 1), cap)


def next_failures(failures: int, ran_for: float) -> int:
    """Failures in a row after a recorder died having run `ran_for` seconds."""
    return 1 if ran_for >= HEALTHY_AFTER else failures + 1


# -- what `up`, `down` and `status` use ------------------------------------------------------------

def state_path(data_dir: Path) -> Path:
    return Path(data_dir) / STATE


def running(data_dir: Path) -> dict[str, Any] | None:
    """The state of the live supervisor of `data_dir`, if there is one."""
    try:
        state = json.loads(state_path(data_dir).read_text())
    except (OSError, ValueError):
        return None
    pid = int(state.get("pid") or 0)
    return state if pid and process_runs(pid, _MARKER) else None


def recording_pid(state: dict[str, Any]) -> int | None:
    """The recorder process of a supervisor's state, once it records (holds its ledger's lock)."""
    child = int(state.get("child") or 0)
    holder = lock_holder(Path(state["ledger"]))
    return child if child and holder == child else None


def start(data_dir: Path, url: str, ledger: Path, prefix: str, *, timeout: float = 20.0) -> tuple[dict[str, Any], bool]:
    """Make sure one supervisor records `url` into `ledger` for `data_dir`; returns its state and
    whether it was started now. Waits until its recorder records; ServerError if it cannot."""
    # Absolute: `status` and `down` may run from another directory than this `up`.
    data_dir, ledger = Path(data_dir).resolve(), Path(ledger).resolve()
    current = running(data_dir)
    if current is not None:
        if (current.get("url"), current.get("ledger"), current.get("prefix")) == (url, str(ledger), prefix):
            return current, False
        stop(data_dir)  # the server moved (another --port) or another ledger: follow the new one
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / LOG, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", _MARKER, "--data-dir", str(data_dir), "--url", url, "--ledger", str(ledger),
             "--prefix", prefix],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives `up` and its terminal
        )
    deadline = time.monotonic() + timeout
    while True:
        state = running(data_dir)
        if state is not None and state.get("pid") == proc.pid:
            if recording_pid(state):
                return state, True
            if state.get("lastError"):
                stop(data_dir)
                raise ServerError(f"the recorder could not start: {state['lastError']} (log: {data_dir / LOG})")
        if proc.poll() is not None:
            other = running(data_dir)
            if other is not None:  # another `up` started one at the same moment: it is the one
                return other, False
            raise ServerError(f"the recorder supervisor exited with {proc.returncode} (log: {data_dir / LOG})")
        if time.monotonic() > deadline:
            stop(data_dir)
            raise ServerError(f"the recorder did not start within {timeout:.0f}s (log: {data_dir / LOG})")
        time.sleep(0.05)


def stop(data_dir: Path, timeout: float = 15.0) -> dict[str, Any] | None:
    """Stop the supervisor of `data_dir` and its recorder; returns the state it had, None if none ran."""
    try:
        state = json.loads(state_path(data_dir).read_text())
    except (OSError, ValueError):
        return None
    sup, child = int(state.get("pid") or 0), int(state.get("child") or 0)
    alive = sup and process_runs(sup, _MARKER)
    if alive:
        _terminate(sup, timeout)  # it stops its recorder first
    # A recorder left behind by a supervisor killed outright stops by itself within a second, or here.
    orphan = child and pid_alive(child) and lock_holder(Path(state.get("ledger", ""))) == child
    if orphan:
        _terminate(child, timeout)
    state_path(data_dir).unlink(missing_ok=True)
    return state if alive or orphan else None


def _terminate(pid: int, timeout: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return
        time.sleep(0.02)


# -- the supervisor process ------------------------------------------------------------------------

def _write_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)  # readers never see half a file


def _last_error(log: Path) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    errors = [ln for ln in lines if ln.startswith("error:")]
    return (errors or lines or [""])[-1].removeprefix("error:").strip()


def supervise(data_dir: Path, url: str, ledger: Path, prefix: str) -> int:
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    guard = open(data_dir / (STATE + ".lock"), "a")
    if fcntl is not None:
        try:
            fcntl.flock(guard.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            print("another recorder supervisor serves this data directory", flush=True)
            return 0
    path = state_path(data_dir)
    log = data_dir / LOG
    state: dict[str, Any] = {"pid": os.getpid(), "child": None, "url": url, "ledger": str(ledger), "prefix": prefix,
                             "restarts": 0, "lastError": None, "startedAt": time.time()}
    env = {**os.environ, SUPERVISOR_ENV: str(os.getpid())}
    failures = 0
    try:
        while not stopping.is_set():
            began = time.monotonic()
            with open(log, "ab") as out:
                child = subprocess.Popen(
                    [sys.executable, "-m", "ledgerbus.cli.main", "record", "--url", url, "--ledger", str(ledger),
                     "--prefix", prefix, "--data-dir", str(data_dir)],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                )
            state["child"] = child.pid
            _write_state(path, state)
            while child.poll() is None and not stopping.wait(0.2):
                if state["lastError"] and lock_holder(ledger) == child.pid:
                    state["lastError"] = None  # recording again
                    _write_state(path, state)
            if stopping.is_set():
                child.terminate()
                try:
                    child.wait(10)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
                break
            failures = next_failures(failures, time.monotonic() - began)
            delay = restart_delay(failures)
            state.update(child=None, restarts=state["restarts"] + 1,
                         lastError=_last_error(log) or f"exited with {child.returncode}")
            _write_state(path, state)
            with open(log, "a") as out:
                out.write(f"supervisor: recorder pid {child.pid} exited with {child.returncode}; "
                          f"restarting in {delay:.1f}s\n")
            stopping.wait(delay)
    finally:
        try:
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ledgerbus.cli.supervisor")
    p.add_argument("--data-dir", required=True, type=Path)
    p.add_argument("--url", required=True)
    p.add_argument("--ledger", required=True, type=Path)
    p.add_argument("--prefix", required=True)
    args = p.parse_args(argv)
    return supervise(args.data_dir, args.url, args.ledger, args.prefix)


if __name__ == "__main__":
    sys.exit(main())
