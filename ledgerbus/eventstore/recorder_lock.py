"""One recorder per ledger file: an exclusive lock on `<ledger>.lock`, held for as long as it records.

Two recorders on one file would each reposition the shared durable consumer at their own checkpoint and
write the checkpoint back and forth; the store stays consistent (appends are idempotent by id and
position), but the mirror's resume point would not. The lock makes the second one refuse to start.
It is an flock, so the kernel releases it when its holder dies, even by kill -9: no stale lock.
The holder writes its pid into the file once it records, for `status` and `up` to name it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from ledgerbus.bus.server import pid_alive
from ledgerbus.errors import StoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; the rule is then the user's to keep
    fcntl = None  # type: ignore[assignment]


def lock_path(ledger: Path) -> Path:
    return ledger.with_name(ledger.name + ".lock")


def lock_holder(ledger: Path) -> int | None:
    """The pid recording into `ledger` now, if one announced itself and is alive."""
    try:
        pid = int(lock_path(ledger).read_text().strip() or 0)
    except (OSError, ValueError):
        return None
    return pid if pid and pid_alive(pid) else None


class RecorderLock:
    def __init__(self, ledger: Path) -> None:
        self.ledger = Path(ledger)
        self.path = lock_path(self.ledger)
        self._file: IO[str] | None = None

    def acquire(self) -> "RecorderLock":
        """Take the lock, or StoreError naming the recorder that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")
        if fcntl is not None:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                holder = lock_holder(self.ledger)
                who = f"pid {holder}" if holder else "another process"
                raise StoreError(f"{self.ledger} is already being recorded by {who} "
                                 "(one recorder per ledger file)") from None
        self._file = f
        return self

    def announce(self) -> None:
        """Write our pid: the recorder runs (called once it does, so a pid here means recording)."""
        if self._file is None:
            return
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()

    def release(self) -> None:
        if self._file is None:
            return
        try:
            self._file.seek(0)
            self._file.truncate()
        except OSError:
            pass
        self._file.close()  # closing drops the flock
        self._file = None
