"""`ledgerbus ui --url`: the live LEDGER, mirrored into a private SQLite file by the recorder, then served
as any ledger file is. The recorder is the code `ledgerbus up` and `ledgerbus record` run; its consumer
has a name of its own and is deleted when the UI stops."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from ledgerbus.bus.connection import Bus
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.eventstore.sqlite import SQLiteEventStore


class LiveMirror:
    """`connect`: a new connection to the server, made as the CLI makes every one (credentials, context)."""

    def __init__(self, connect: Callable[[], Awaitable[Bus]], path: Path) -> None:
        self.connect, self.path = connect, path
        self.durable = f"ui-{secrets.token_hex(6)}"
        self._bus: Bus | None = None
        self._store: SQLiteEventStore | None = None
        self._recorder: Recorder | None = None

    async def start(self) -> None:
        self._bus = await self.connect()
        self._store = SQLiteEventStore(self.path)
        self._recorder = Recorder(self._bus, self._store, durable=self.durable)
        await self._recorder.start()

    async def catch_up(self) -> None:
        """Until the mirror holds what the stream holds now (an action's page then shows what it did)."""
        if self._recorder is not None:
            await self._recorder.catch_up()

    @property
    def bus(self) -> Bus | None:
        return self._bus

    async def stop(self) -> None:
        if self._recorder is not None:
            await self._recorder.stop()
        if self._bus is not None:
            with contextlib.suppress(Exception):  # already gone with the server: nothing left to clean
                await self._bus.delete_consumer(self.durable)
            await self._bus.close()
        if self._store is not None:
            self._store.close()
