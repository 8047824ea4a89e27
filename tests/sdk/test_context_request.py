"""ctx.request: a sub-conversation in the same ledger, answered through the agent's own inbox."""

import msgspec

from ledgerbus.agents.context import sub_key
from ledgerbus.agents.sdk import Agent, AgentError
from ledgerbus.ids import now_ms
from ledgerbus.schemas.capability import CapabilityRegistry


class Text(msgspec.Struct):
    text: str


class Shout(msgspec.Struct):
    text: str
    echoed: str


def make_agents() -> tuple[Agent, Agent]:
    reg = CapabilityRegistry()
    echo = Agent("echo", registry=reg)
    front = Agent("front", registry=reg)

    @echo.capability("echo.say")
    async def say(inp: Text, ctx) -> Text:
        if inp.text == "boom":
            raise AgentError("NOPE", "echo refuses to say boom")
        return Text(inp.text.upper())

    @front.capability("front.shout")
    async def shout(inp: Text, ctx) -> Shout:
        answer = await ctx.request("echo", "echo.say", {"text": inp.text}, timeout=5, output=Text)
        return Shout(text=inp.text, echoed=answer.text)

    return echo, front


async def test_sub_request_is_part_of_the_same_conversation(run_agent):
    echo, front = make_agents()
    conv = await run_agent(front, "front.shout", {"text": "hi"}, also=(echo,), deadline=now_ms() + 20_000)
    assert conv.response == {"text": "hi", "echoed": "HI"}, conv.timeline()

    sub_requests = [e for e in conv.events if e.sender == "front" and e.action.value == "REQUEST"]
    assert len(sub_requests) == 1
    sub = sub_requests[0]
    assert sub.conversation_id == conv.conversation_id
    assert sub.causation_id == conv.request.id  # caused by the request being handled
    assert sub.recipient == "echo" and sub.task_id != conv.request.task_id
    assert sub.idempotency_key == sub_key(conv.request.key, 1, "echo.say")
    assert sub.deadline == conv.request.deadline  # the sub-request is useless after its parent's deadline too
    # The echo's answer went back to front, and it sits in the ledger before front's own RESPONSE.
    order = [(e.sender, e.action.value) for e in conv.events]
    assert order.index(("echo", "RESPONSE")) < order.index(("front", "RESPONSE"))
    state = conv.state
    assert {t.agent for t in state.tasks.values()} == {"front", "echo"}
    assert all(t.status.value == "DONE" for t in state.tasks.values())


async def test_sub_request_error_reaches_the_handler_as_an_exception(run_agent):
    echo, front = make_agents()
    conv = await run_agent(front, "front.shout", {"text": "boom"}, also=(echo,))
    assert not conv.ok
    assert conv.error.code == "HANDLER_ERROR"
    assert "NOPE" in conv.error.message and "boom" in conv.error.message
    assert [e.error.code for e in conv.by("echo") if e.error] == ["NOPE"]


def test_sub_keys_are_stable_and_bounded():
    assert sub_key("k", 2, "a.b") == sub_key("k", 2, "a.b") != sub_key("k", 3, "a.b")
    assert len(sub_key("x" * 300, 1, "a.b")) <= 256


async def test_a_retried_task_gets_recorded_sub_answers_instead_of_repeating_work(run_agent):
    reg = CapabilityRegistry()
    echo, front = Agent("echo", registry=reg), Agent("front", registry=reg)
    echo_runs: list[str] = []

    @echo.capability("echo.say")
    async def say(inp: Text, ctx) -> Text:
        echo_runs.append(inp.text)
        return Text(inp.text.upper())

    @front.capability("front.shout")
    async def shout(inp: Text, ctx) -> Shout:
        answer = await ctx.request("echo", "echo.say", {"text": inp.text}, timeout=5, output=Text)
        if ctx.attempt == 1:
            raise AgentError("FLAKY", "lost the answer on the way out", retryable=True)
        return Shout(text=inp.text, echoed=answer.text)

    first = await run_agent(front, "front.shout", {"text": "hi"}, also=(echo,))
    assert first.error.code == "FLAKY"
    retry = await run_agent(front, "front.shout", {"text": "hi"}, conversation_id=first.conversation_id,
                            task_id=first.request.task_id, attempt=2, idempotency_key=first.request.key)
    assert retry.response == {"text": "hi", "echoed": "HI"}
    assert echo_runs == ["hi"]  # the echo handler ran once; the retry's sub-request got the recorded answer
    keys = {e.idempotency_key for e in retry.events if e.sender == "front" and e.action.value == "REQUEST"}
    assert keys == {sub_key(first.request.key, 1, "echo.say")}
