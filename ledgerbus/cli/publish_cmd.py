"""`ledgerbus publish` and `ledgerbus request`: put a REQUEST in the ledger (and wait for its answers)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from ledgerbus.cli.common import DataDirOption, JsonOption, UrlOption, console, err_console, is_tty, run
from ledgerbus.cli.live import PrefixOption
from ledgerbus.cli.connopts import connection_options

PayloadArg = typer.Argument(..., help="the payload: inline JSON, @file.json, or - for stdin")
AgentArg = typer.Argument(..., help="the agent type to ask (e.g. research, or orchestrator)")
CapabilityArg = typer.Argument(..., help="the capability (e.g. research.search)")
ConversationOption = typer.Option(None, "--conversation", "-c", help="join this conversation (default: a new one)")
SenderOption = typer.Option(None, "--sender", help="address the answers go to (default: the security-mode user "
                             "you connect as, else cli)")
DeadlineOption = typer.Option(None, "--deadline", help="seconds from now after which the answer is useless")
KeyOption = typer.Option(None, "--idempotency-key", help="same key → same effect (default: the task id)")
NoValidateOption = typer.Option(False, "--no-validate", help="send without checking the payload's schema")

ACTION_STYLE = {"ACK": "green", "PROGRESS": "blue", "RESPONSE": "bold green", "ERROR": "bold red"}


async def _prepare(url: str | None, data_dir: Path, prefix: str | None, agent: str, capability: str,
                   payload: str, conversation: str | None, sender: str | None, deadline: float | None,
                   key: str | None, no_validate: bool) -> tuple[Any, Any, str]:
    from ledgerbus.cli.live import connect, identity
    from ledgerbus.cli.payloads import read_payload, resolve, validate
    from ledgerbus.errors import ConfigError
    from ledgerbus.ids import now_ms
    from ledgerbus.schemas.envelope import is_address, is_token, new_request

    data = read_payload(payload)  # bad JSON fails before any connection is made
    if not is_address(agent):
        raise ConfigError(f"agent {agent!r} is not an address: it must match [a-z0-9_-]{{1,64}}")
    if sender is not None and not is_address(sender):
        raise ConfigError(f"--sender {sender!r} is not an address: it must match [a-z0-9_-]{{1,64}}")
    if conversation is not None and not is_token(conversation):
        raise ConfigError(f"--conversation {conversation!r} must match [A-Za-z0-9_-]{{1,128}}")
    bus = await connect(url, data_dir, prefix=prefix, sender=sender)
    sender = sender or identity(bus) or "cli"  # in security mode a request is signed by, so sent as, its user
    try:
        target = await resolve(bus, agent, capability)
        if not no_validate:
            validate(data, target)
    except BaseException:
        await bus.close()
        raise
    # Said on stderr so --json output stays clean: both are worth knowing before waiting for an answer.
    if target.live_instances == 0:
        err_console.print(f"[yellow]note:[/] no live instance of {agent}; the request waits in its queue",
                          highlight=False, soft_wrap=True)
    if target.source == "none" and not no_validate:
        err_console.print(f"[yellow]note:[/] no schema known for {capability}; the payload was not checked here",
                          highlight=False, soft_wrap=True)
    env = new_request(sender=sender, recipient=agent, capability=capability, payload=data,
                      conversation_id=conversation, idempotency_key=key,
                      deadline=now_ms() + int(deadline * 1000) if deadline else None)
    return bus, env, sender


@connection_options
def publish(
    agent: str = AgentArg,
    capability: str = CapabilityArg,
    payload: str = PayloadArg,
    conversation: str = ConversationOption,
    sender: str = SenderOption,
    deadline: float = DeadlineOption,
    idempotency_key: str = KeyOption,
    no_validate: bool = NoValidateOption,
    url: str = UrlOption,
    prefix: str = PrefixOption,
    data_dir: Path = DataDirOption,
    as_json: bool = JsonOption,
) -> None:
    """Validate a payload against the capability's schema and append a REQUEST to the ledger.

    Prints the envelope id and the conversation id; the agent answers later (see `ledgerbus tail`).

    Examples:

      ledgerbus publish research research.search '{"topic": "event sourcing"}'

      ledgerbus publish writing writing.draft @draft.json --json

      echo '{"topic": "nats"}' | ledgerbus publish research research.search -
    """
    run(_publish(url, data_dir, prefix, agent, capability, payload, conversation, sender, deadline,
                 idempotency_key, no_validate, as_json))


async def _publish(url: str | None, data_dir: Path, prefix: str | None, agent: str, capability: str, payload: str,
                   conversation: str | None, sender: str | None, deadline: float | None, key: str | None,
                   no_validate: bool, as_json: bool) -> None:
    bus, env, sender = await _prepare(url, data_dir, prefix, agent, capability, payload, conversation, sender,
                                      deadline, key, no_validate)
    try:
        ack = await bus.publish(env)
    finally:
        await bus.close()
    if as_json:
        print(json.dumps({"id": env.id, "conversationId": env.conversation_id, "taskId": env.task_id,
                          "position": ack.seq, "subject": bus.subjects.of(env)}))
        return
    console.print(f"published [bold]{env.id}[/] (ledger position {ack.seq})")
    console.print(f"conversation [bold]{env.conversation_id}[/]")


@connection_options
def request(
    agent: str = AgentArg,
    capability: str = CapabilityArg,
    payload: str = PayloadArg,
    timeout: float = typer.Option(30.0, "--timeout", "-t", min=0.1, help="seconds to wait for the answer"),
    conversation: str = ConversationOption,
    sender: str = SenderOption,
    deadline: float = DeadlineOption,
    idempotency_key: str = KeyOption,
    no_validate: bool = NoValidateOption,
    url: str = UrlOption,
    prefix: str = PrefixOption,
    data_dir: Path = DataDirOption,
    as_json: bool = JsonOption,
) -> None:
    """Publish a REQUEST, then print its ACK, PROGRESS and final RESPONSE or ERROR as they arrive.

    Each line shows the time since sending. Exit status 0 means a RESPONSE, 1 an ERROR or no answer
    within --timeout (or by --deadline, when that comes first: then the answer is useless, so it gives
    up). With --json every answer is one JSON envelope per line.

    Examples:

      ledgerbus request research research.search '{"topic": "event sourcing"}'

      ledgerbus request orchestrator content.article '{"topic": "coffee"}' --timeout 60 --json
    """
    ok = run(_request(url, data_dir, prefix, agent, capability, payload, timeout, conversation, sender, deadline,
                      idempotency_key, no_validate, as_json))
    if not ok:
        raise typer.Exit(1)


async def _request(url: str | None, data_dir: Path, prefix: str | None, agent: str, capability: str, payload: str,
                   timeout: float, conversation: str | None, sender: str | None, deadline: float | None, key: str | None,
                   no_validate: bool, as_json: bool) -> bool:
    import msgspec

    from ledgerbus.bus.requester import Requester
    from ledgerbus.schemas.codes import Action

    bus, env, sender = await _prepare(url, data_dir, prefix, agent, capability, payload, conversation, sender,
                                      deadline, key, no_validate)
    # Past the deadline an answer is useless (DESIGN.md): wait no longer than it, whatever --timeout says.
    by_deadline = deadline is not None and deadline < timeout
    wait = deadline if by_deadline and deadline is not None else timeout
    requester = await Requester(bus, sender).start()
    ok = False
    status = console.status(f"waiting for {agent}…") if is_tty() and not as_json else None
    try:
        if not as_json:
            console.print(f"→ REQUEST {escape(capability)} to {agent}  id {env.id}  conversation {env.conversation_id}",
                          highlight=False)
        if status is not None:
            status.start()
        start = time.monotonic()
        async for ans in _answers(requester, env, wait, by_deadline):
            elapsed = int((time.monotonic() - start) * 1000)
            ok = ans.action is Action.RESPONSE
            if as_json:
                print(json.dumps({"elapsedMs": elapsed, **msgspec.to_builtins(ans)}), flush=True)
                continue
            if status is not None:
                status.update(f"{ans.action.value} from {ans.sender}… waiting")
            console.print(_line(ans, elapsed), highlight=False)
    finally:
        if status is not None:
            status.stop()
        await requester.stop()
        await bus.close()
    if not ok and not as_json:
        err_console.print("[red]request failed[/]")
    return ok


async def _answers(requester: Any, env: Any, wait: float, by_deadline: bool) -> Any:
    from ledgerbus.errors import TaskTimeout

    try:
        async for ans in requester.stream(env, timeout=wait):
            yield ans
    except TaskTimeout:
        if by_deadline:
            raise TaskTimeout(f"gave up at the deadline: no answer to {env.capability} from {env.recipient} "
                              f"within --deadline {wait:g}s") from None
        raise


def _line(ans: Any, elapsed: int) -> str:
    act = ans.action.value
    style = ACTION_STYLE.get(act, "")
    head = f"[dim]+{elapsed:>6} ms[/] [{style}]{act:<8}[/] from {ans.sender}"
    if ans.error is not None:
        return f"{head}  {escape(ans.error.code)}: {escape(ans.error.message)}"
    body = json.dumps(ans.payload, ensure_ascii=False)
    if act == "RESPONSE":
        return f"{head}\n{escape(body)}"
    return f"{head}  {escape(body if len(body) <= 100 else body[:99] + '…')}"
