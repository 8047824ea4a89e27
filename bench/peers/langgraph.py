"""LangGraph: a StateGraph (three research nodes from START in one superstep → write → edit) compiled
with AsyncSqliteSaver and run with `durability="sync"`, in the trial's process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypedDict

from bench.peers import Json, PeerInfo
from bench.peers import workload as w

INFO = PeerInfo(
    name="langgraph",
    label="LangGraph + AsyncSqliteSaver",
    setup="in-process StateGraph, one thread_id per conversation; research nodes 0–2 from START, then write, edit",
    durability='`durability="sync"`: each node\'s writes and each superstep\'s checkpoint committed to SQLite '
               "(WAL, synchronous=FULL: an fsync per commit) before the graph goes on",
    packages=("langgraph", "langgraph-checkpoint-sqlite", "aiosqlite"),
)


def _merge(a: dict[int, Json], b: dict[int, Json]) -> dict[int, Json]:
    return {**a, **b}


class State(TypedDict, total=False):
    topic: str
    research: Annotated[dict[int, Json], _merge]
    draft: Json
    edited: Json


def _research_node(i: int) -> Any:
    async def node(s: State) -> State:
        return {"research": {i: w.research(w.research_queries(s["topic"])[i])}}
    return node


async def _write(s: State) -> State:
    results = [s["research"][i] for i in range(w.SUBTOPICS)]
    return {"draft": w.draft(w.draft_request(s["topic"], results))}


async def _edit(s: State) -> State:
    return {"edited": w.edit(w.edit_request(s["draft"]))}


class LangGraphDriver:
    def __init__(self) -> None:
        self.cm: Any = None
        self.graph: Any = None

    async def start(self, workdir: Path) -> None:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
        from langgraph.graph import END, START, StateGraph

        g = StateGraph(State)
        for i in range(w.SUBTOPICS):
            g.add_node(f"research_{i}", _research_node(i))
            g.add_edge(START, f"research_{i}")
        g.add_node("write", _write)
        g.add_node("edit", _edit)
        g.add_edge([f"research_{i}" for i in range(w.SUBTOPICS)], "write")
        g.add_edge("write", "edit")
        g.add_edge("edit", END)
        self.cm = AsyncSqliteSaver.from_conn_string(str(workdir / "checkpoints.db"))
        saver = await self.cm.__aenter__()
        await saver.setup()
        self.graph = g.compile(checkpointer=saver)

    async def run(self, topic: str) -> Json:
        out = await self.graph.ainvoke({"topic": topic}, {"configurable": {"thread_id": topic}}, durability="sync")
        return w.article(topic, out["draft"], out["edited"])

    async def stop(self) -> None:
        if self.cm is not None:
            await self.cm.__aexit__(None, None, None)


def driver() -> LangGraphDriver:
    return LangGraphDriver()
