"""DBOS: one async workflow per conversation (three research steps gathered, then write, edit), run in
the trial's process, its system database in SQLite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.peers import Json, PeerInfo

INFO = PeerInfo(
    name="dbos",
    label="DBOS",
    setup="in-process DBOS, SQLite system database; one @DBOS.workflow per conversation, research steps "
          "started together with asyncio.gather, then write, edit (each a @DBOS.step)",
    durability="the workflow's start and each step's output committed to SQLite (rollback journal, "
               "synchronous=FULL: fsyncs per commit) before the workflow goes on",
    packages=("dbos",),
)


class DbosDriver:
    def __init__(self) -> None:
        self.app: Any = None

    async def start(self, workdir: Path) -> None:
        from dbos import DBOS

        from bench.peers import dbos_app

        self.app = dbos_app
        DBOS(config={"name": "ledgerbus-bench", "system_database_url": f"sqlite:///{workdir / 'dbos.sqlite'}",
                     "log_level": "WARNING"})
        DBOS.launch()

    async def run(self, topic: str) -> Json:
        return await self.app.pipeline(topic)  # type: ignore[no-any-return]

    async def stop(self) -> None:
        from dbos import DBOS

        DBOS.destroy()


def driver() -> DbosDriver:
    return DbosDriver()
