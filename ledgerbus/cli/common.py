"""Shared CLI plumbing: options, the console, and turning errors into one clear line."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ledgerbus.errors import (BusTimeout, ConfigError, InvalidMessage, LedgerbusError, PublishError, ServerError,
                              StoreError)

T = TypeVar("T")

# Piped output (CI logs, `| less`) gets a wide fixed width instead of rich's 80-column default,
# unless COLUMNS says how wide.
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 140)
err_console = Console(stderr=True)

DEFAULT_LEDGER = os.path.join(".ledgerbus", "ledger.db")

UrlOption = typer.Option(None, "--url", envvar="LEDGERBUS_NATS_URL",
                         help="NATS server URL; unset: the embedded server for --data-dir")
DataDirOption = typer.Option(".ledgerbus", "--data-dir", envvar="LEDGERBUS_DATA_DIR",
                             help="where the embedded server keeps its store")
JsonOption = typer.Option(False, "--json", help="machine-readable JSON output")


def fail(message: str, code: int = 1) -> NoReturn:
    # One line, never wrapped; escaped, because messages quote user input and patterns like [a-z0-9_-].
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Invoked from async code (the app called in-process, as tests do): a loop of its own, on a thread.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledgerbus-cli") as pool:
        return pool.submit(asyncio.run, coro).result()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; ledgerbus errors become one line and an exit code, not a traceback."""
    try:
        return _run(coro)
    except ServerError as exc:
        # A publish or a read the server refused (a permissions violation) surfaces as a timeout: say the refusal.
        from ledgerbus.cli.connopts import denial

        fail((denial() if isinstance(exc, (PublishError, BusTimeout)) else None) or str(exc), 2)
    except (InvalidMessage, ConfigError, StoreError) as exc:
        fail(str(exc), 2 if isinstance(exc, StoreError) else 1)
    except LedgerbusError as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(130)
    except Exception:
        # A request the server refused (a permissions violation) surfaces as a timeout: say the refusal.
        from ledgerbus.cli.connopts import denial

        why = denial()
        if why is None:
            raise
        fail(why, 2)
    raise AssertionError("unreachable")  # pragma: no cover


def is_tty() -> bool:
    return sys.stdout.isatty()
