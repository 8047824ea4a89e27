"""run_agent: the plugin's helper, with pydantic models too, and what a Conversation offers."""

import pydantic

from ledgerbus.agents.sdk import Agent, AgentError
from ledgerbus.schemas.capability import CapabilityRegistry


class Order(pydantic.BaseModel):
    item: str = pydantic.Field(min_length=1)
    quantity: int = pydantic.Field(ge=1)


class Receipt(pydantic.BaseModel):
    item: str
    total_cents: int


def shop() -> Agent:
    agent = Agent("shop", registry=CapabilityRegistry())

    @agent.capability("shop.buy")
    async def buy(order: Order, ctx) -> Receipt:
        await ctx.progress(stage="pricing")
        await ctx.progress({"stage": "charging"}, attempt=ctx.attempt)
        if order.item == "gold":
            raise AgentError("TOO_EXPENSIVE", "gold is not for sale", retryable=False, details={"item": "gold"})
        return Receipt(item=order.item, total_cents=250 * order.quantity)

    return agent


async def test_pydantic_agent_response_progress_and_state(run_agent):
    conv = await run_agent(shop(), "shop.buy", {"item": "tea", "quantity": 2})
    assert conv.ok and conv.response == {"item": "tea", "total_cents": 500}
    assert conv.progress == [{"stage": "pricing"}, {"stage": "charging", "attempt": 1}]
    assert conv.actions == ["REQUEST", "ACK", "PROGRESS", "PROGRESS", "RESPONSE"]
    task = conv.state.tasks[conv.request.task_id]
    assert task.status.value == "DONE" and task.progress == 2 and task.agent == "shop"
    assert "shop → tester RESPONSE shop.buy" in conv.timeline()
    assert [e.action.value for e in conv.by("tester")] == ["REQUEST"]


async def test_errors_and_bad_input_as_the_ledger_recorded_them(run_agent):
    agent = shop()
    conv = await run_agent(agent, "shop.buy", {"item": "gold", "quantity": 1})
    assert not conv.ok and conv.response is None
    assert (conv.error.code, conv.error.details) == ("TOO_EXPENSIVE", {"item": "gold"})
    bad = await run_agent(agent, "shop.buy", {"item": "tea", "quantity": 0}, validate=False)
    assert bad.error.code == "INVALID_MESSAGE" and "quantity" in bad.error.message
    assert bad.actions == ["REQUEST", "ERROR"]  # refused before the receipt: no ACK, no work


async def test_a_conversation_can_be_read_back_from_the_ledger(run_agent):
    conv = await run_agent(shop(), "shop.buy", {"item": "tea", "quantity": 1})
    again = await run_agent.conversation(conv.conversation_id)
    assert [e.id for e in again] == [e.id for e in conv.events]
    assert [e.action.value for e in again] == ["REQUEST", "ACK", "PROGRESS", "PROGRESS", "RESPONSE"]
    assert await run_agent.conversation("no-such-conversation") == []
