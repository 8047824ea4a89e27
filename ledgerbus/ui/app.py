"""The ASGI app: server-rendered pages over a SQLite ledger, kept live with server-sent events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ledgerbus.errors import ConfigError, RedriveError
from ledgerbus.eventstore.sqlite import SQLiteEventStore
from ledgerbus.eventstore.timetravel import parse_point
from ledgerbus.orchestrator.policy import TaskPolicy
from ledgerbus.orchestrator.stalls import find_stalls
from ledgerbus.ui import actions, conversation_page, list_page, other_pages
from ledgerbus.ui.html import e, layout
from ledgerbus.ui.index import LedgerIndex
from ledgerbus.ui.mirror import LiveMirror
from ledgerbus.ui.summary import Filters, matches
from ledgerbus.ui.verifier import Verifier

STATIC = Path(__file__).parent / "static"
#: How often the live stream looks for new events in the file the recorder writes.
POLL_S = 0.25
#: The failure-policy defaults (DESIGN.md), as `ledgerbus stalls` applies them without options.
DEFAULT_POLICY = TaskPolicy()
#: The pause between two chunks of the start-up count of the agents' events.
COUNT_PAUSE_S = 0.1
#: How long the Integrity page waits for a verify before it answers with "under way" (and looks again).
VERIFY_WAIT_S = 0.5

#: What a live action starts from: its form, the bus, the pipeline and the conversation's events.
Live = tuple[dict[str, str], Any, "actions.Pipeline", list[Any]]


def _time(text: str) -> int | None:
    if not text:
        return None
    point = parse_point(text)
    return point.time_ms


def filters_of(q: dict[str, str]) -> Filters:
    return Filters(status=q.get("status", ""), capability=q.get("capability", ""), agent=q.get("agent", ""),
                   error_code=q.get("code", ""), since_ms=_time(q.get("since", "")),
                   until_ms=_time(q.get("until", "")), prefix=q.get("q", "").strip())


def _bad(message: str) -> HTMLResponse:
    return HTMLResponse(layout("Bad request", f'<h1>Bad request</h1><p class="err">{e(message)}</p>'), 400)


def create_app(ledger: Path, *, token: str | None = None, mirror: LiveMirror | None = None,
               pipeline: actions.Pipeline | None = None, jaeger: str | None = None) -> Starlette:
    """The app over `ledger`. `token`: actions are on, and each request for one must carry it. `mirror`:
    the file is the live stream's mirror, which runs while the app does. `jaeger`: the Jaeger UI that
    conversation pages link their trace to."""
    if mirror is not None:
        SQLiteEventStore(ledger).close()  # the schema, so that the read-only index can open the new file
    index = LedgerIndex(ledger)
    verifier = Verifier(ledger)

    async def count_agents() -> None:
        """The agents' counts, caught up at start-up a chunk at a time, so the first visit finds them ready;
        a pause between chunks leaves the CPU to the pages people are opening meanwhile."""
        while not await asyncio.to_thread(index.count_agents, index.last_position()):
            await asyncio.sleep(COUNT_PAUSE_S)

    async def conversations(request: Request) -> Response:
        raw = dict(request.query_params)
        try:
            f = filters_of(raw)
            before = int(raw["before"]) if raw.get("before") else None
        except (ConfigError, ValueError) as exc:
            return _bad(str(exc))
        last = await asyncio.to_thread(index.last_position)
        page = await asyncio.to_thread(index.page, f, before=before)
        return HTMLResponse(list_page.render(page, f, raw, live_after=last, first=before is None))

    async def conversation(request: Request) -> Response:
        cid = request.path_params["cid"]
        events = await asyncio.to_thread(index.events, cid)
        if not events:
            return HTMLResponse(layout("Not found", f"<h1>No conversation {e(cid)}</h1><p><a href='/'>all conversations</a></p>"), 404)
        try:
            at = int(request.query_params["at"]) if request.query_params.get("at") else None
            diff = int(request.query_params["diff"]) if request.query_params.get("diff") else None
        except ValueError:
            return _bad("at and diff are ledger positions (whole numbers)")
        html = await asyncio.to_thread(conversation_page.render, cid, events, at, diff, token is not None,
                                       mirror is not None, jaeger)
        return HTMLResponse(html)

    async def live(request: Request) -> Response:
        raw = dict(request.query_params)
        try:
            f = filters_of(raw)
            after = int(raw.get("after", "0"))
        except (ConfigError, ValueError) as exc:
            return Response(str(exc), 400)

        async def stream() -> AsyncIterator[str]:
            nonlocal after
            yield "retry: 1000\n\n"
            while not await request.is_disconnected():
                last = await asyncio.to_thread(index.last_position)
                if last > after:
                    for cid in await asyncio.to_thread(index.changed_since, after):
                        s = await asyncio.to_thread(index.summary, cid)
                        if s is not None and matches(s, f):
                            data = json.dumps({"id": cid, "html": list_page.row(s)})
                            yield f"event: conversation\ndata: {data}\n\n"
                    after = last
                    yield f"event: position\ndata: {after}\n\n"
                await asyncio.sleep(POLL_S)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if mirror is not None:
            await mirror.start()
        counting = asyncio.ensure_future(count_agents())
        try:
            yield
        finally:
            counting.cancel()
            await verifier.stop()
            if mirror is not None:
                await mirror.stop()
            await asyncio.gather(counting, return_exceptions=True)
            index.close()

    async def agents_page(request: Request) -> Response:
        rows, upto, last = await asyncio.to_thread(index.agents)
        return HTMLResponse(other_pages.agents(rows, upto, last))

    async def stalls_page(request: Request) -> Response:
        def gather() -> str:
            now = find_stalls(index.running(), int(time.time() * 1000), lambda capability, agent: DEFAULT_POLICY)
            return other_pages.stalls(now, index.recent_verdicts(), index.rejects(), index.dead_letters(),
                                      redrive=token is not None and mirror is not None)

        return HTMLResponse(await asyncio.to_thread(gather))

    async def integrity_page(request: Request) -> Response:
        last = await asyncio.to_thread(index.last_position)
        job = verifier.ensure(last)
        if job is not None:  # a small ledger is verified before the page answers; a big one goes on meanwhile
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(job), VERIFY_WAIT_S)
        return HTMLResponse(other_pages.integrity(verifier.status(), last, time.time()))

    async def authorized(request: Request) -> tuple[dict[str, str], Response | None]:
        if token is None:
            return {}, Response("actions are off: start the UI with --actions\n", 404, media_type="text/plain")
        # A urlencoded form, parsed here: Starlette's form parser would add python-multipart for one field.
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        given = request.headers.get("x-ledgerbus-token") or form.get("token", "")
        if not actions.allowed(token, given):
            return form, Response("refused: this action needs the token `ledgerbus ui --actions` printed\n", 403,
                                  media_type="text/plain")
        return form, None

    async def live_action(request: Request, verb: str) -> Live | Response:
        """An action that runs live: its form, bus, pipeline and the conversation's events, or the refusal."""
        form, refused = await authorized(request)
        if refused is not None:
            return refused
        bus = mirror.bus if mirror is not None else None
        if bus is None or pipeline is None:
            return Response(f"{verb} runs live: start the UI with --url\n", 409, media_type="text/plain")
        return form, bus, pipeline, await asyncio.to_thread(index.events, request.path_params["cid"])

    async def fork_action(request: Request) -> Response:
        started = await live_action(request, "fork")
        if isinstance(started, Response):
            return started
        form, bus, live_pipeline, events = started
        try:
            at = int(form.get("at", ""))
            payload = actions.fork_payload(form.get("payload", ""))
            new = await actions.fork_conversation(bus, events, at, payload, live_pipeline)
            await mirror.catch_up()  # type: ignore[union-attr]
        except ValueError:
            return _bad("at is a ledger position (a whole number)")
        except ConfigError as exc:
            return _bad(str(exc))
        return RedirectResponse(f"/conversations/{new}", 303)

    async def re_execute_action(request: Request) -> Response:
        started = await live_action(request, "re-execute")
        if isinstance(started, Response):
            return started
        form, bus, live_pipeline, events = started
        cid = request.path_params["cid"]
        try:
            budget = int(form.get("max_requests", ""))
            await actions.re_execute_step(bus, events, form.get("step", ""), budget, live_pipeline)
            await mirror.catch_up()  # type: ignore[union-attr]
        except ValueError:
            return _bad("max_requests is a whole number")
        except ConfigError as exc:
            return _bad(str(exc))
        return RedirectResponse(f"/conversations/{cid}", 303)

    async def redrive_action(request: Request) -> Response:
        _, refused = await authorized(request)
        if refused is not None:
            return refused
        if mirror is None or mirror.bus is None:
            return Response("re-drive runs live: start the UI with --url\n", 409, media_type="text/plain")
        letter = request.path_params["lid"]
        try:
            await actions.redrive_letter(mirror.bus, letter)
            await mirror.catch_up()
        except (ConfigError, RedriveError) as exc:
            return _bad(str(exc))
        cid = await asyncio.to_thread(index.conversation_of, letter)
        return RedirectResponse(f"/conversations/{cid}" if cid else "/stalls", 303)

    async def export_action(request: Request) -> Response:
        _, refused = await authorized(request)
        if refused is not None:
            return refused
        cid = request.path_params["cid"]
        data = await asyncio.to_thread(actions.export_jsonl, index.store, cid)
        return Response(data, media_type="application/x-ndjson",
                        headers={"Content-Disposition": f'attachment; filename="{cid}.jsonl"'})

    app = Starlette(routes=[
        Route("/", conversations),
        Route("/conversations/{cid}", conversation),
        Route("/live", live),
        Route("/conversations/{cid}/export", export_action, methods=["POST"]),
        Route("/conversations/{cid}/fork", fork_action, methods=["POST"]),
        Route("/conversations/{cid}/re-execute", re_execute_action, methods=["POST"]),
        Route("/deadletters/{lid}/redrive", redrive_action, methods=["POST"]),
        Route("/agents", agents_page),
        Route("/stalls", stalls_page),
        Route("/integrity", integrity_page),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ], lifespan=lifespan)
    return app
