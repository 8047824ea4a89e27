"""Issue 4: the orchestrator as a service — a client only publishes a REQUEST to `orchestrator`."""

from __future__ import annotations

import asyncio

import pytest

from ledgerbus.examples import AGENTS, ARTICLE, ContentPipeline, register
from ledgerbus.agents.runtime import AgentRuntime
from ledgerbus.bus.requester import Requester
from ledgerbus.errors import RemoteError
from ledgerbus.eventstore.fold import ConversationStatus, fold
from ledgerbus.eventstore.recorder import Recorder
from ledgerbus.orchestrator.engine import Orchestrator
from ledgerbus.schemas.codes import Action

register()  # the orchestrator validates step inputs against the examples' capabilities


async def test_client_request_to_orchestrator_service_gets_the_article(bus, ledger):
    runtimes = [AgentRuntime(a, bus) for a in AGENTS]
    stop = asyncio.Event()
    orch = Orchestrator(bus, decomposer=ContentPipeline())
    async with Recorder(bus, ledger) as rec:
        # Fail fast rather than hang the suite if the service never answers.
        await asyncio.gather(*(r.start() for r in runtimes))
        ready = asyncio.Event()
        service = asyncio.create_task(orch.serve(stop=stop, ready=ready))
        await asyncio.wait_for(ready.wait(), 10)
        client = await Requester(bus, "cli").start()
        seen = []
        env = client.build("orchestrator", ARTICLE, {"topic": "urban gardening", "subtopics": 2})
        async for ans in client.stream(env, timeout=15):
            seen.append(ans)
        with pytest.raises(RemoteError) as bad:  # the service validates what it is asked, like any agent
            await _raw_request(client, {"topic": 7})
        stop.set()
        await asyncio.wait_for(service, 5)
        await orch.stop()
        await asyncio.gather(*(r.stop() for r in runtimes))
        await rec.catch_up(holding=[a.id for a in seen])
    assert seen[0].action is Action.ACK and seen[-1].action is Action.RESPONSE
    assert bad.value.code == "INVALID_MESSAGE" and "$.payload.topic" in bad.value.message
    state = fold(ledger.envelopes(env.conversation_id))
    assert state.status is ConversationStatus.DONE
    assert state.requester == "cli" and state.result["result"]["title"]
    assert {t.agent for t in state.subtasks} == {"research", "writing", "editor"}


async def _raw_request(client: Requester, payload: dict) -> None:
    from ledgerbus.schemas.envelope import new_request

    env = new_request(sender="cli", recipient="orchestrator", capability=ARTICLE, payload=payload)
    async for ans in client.stream(env, timeout=5):
        if ans.action is Action.ERROR:
            raise RemoteError(ans.error.code, ans.error.message)


async def test_orchestrator_service_answers_an_undecodable_request_with_an_error(bus, ledger):
    stop, ready = asyncio.Event(), asyncio.Event()
    orch = Orchestrator(bus, decomposer=ContentPipeline())
    client = await Requester(bus, "cli").start()
    got: asyncio.Queue = asyncio.Queue()
    client.add_listener(got.put_nowait)
    service = asyncio.create_task(orch.serve(stop=stop, ready=ready, recover=False))
    await asyncio.wait_for(ready.wait(), 10)
    # Valid JSON, but not an envelope: no action, a bad attempt. The sender can still be told.
    await bus.publish_raw(f"{bus.subjects.prefix}.orchestrator.REQUEST.c1",
                          b'{"sender": "cli", "conversationId": "c1", "attempt": "first"}')
    err = await asyncio.wait_for(got.get(), 10)
    stop.set()
    await asyncio.wait_for(service, 5)
    await orch.stop()
    assert err.action is Action.ERROR and err.sender == "orchestrator" and err.conversation_id == "c1"
    assert err.error.code == "INVALID_MESSAGE" and "$." in err.error.message
