"""Loading a user's object from `package.module:name` or `path/to/file.py:name`.

`agent run`, `asyncapi --agent` and the orchestrator's `--decomposer`/`--policies` all name user code
this way; each checks the loaded object is of the kind it needs. Every failure is a ConfigError of one
line saying where, never a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ledgerbus.errors import ConfigError


@dataclass(frozen=True)
class Loaded:
    """What a spec named: the module (its import name or file), the attribute, and the value (None if absent)."""

    spec: str
    target: str
    module: ModuleType
    attr: str
    value: Any


def load_spec(spec: str, *, default_attr: str, example: str) -> Loaded:
    """Import the module or file a spec names and look its attribute up (`default_attr` when it names none).

    `example` shows the expected form in the error for an empty module part, e.g. `my_agents.echo:agent`.
    """
    target, _, attr = spec.partition(":")
    attr = attr or default_attr
    if not target:
        raise ConfigError(f"{spec!r}: expected module:{default_attr}, e.g. {example}")
    if target.endswith(".py") or os.sep in target:
        module = _load_file(spec, Path(target))
    else:
        module = _import(spec, target)
    return Loaded(spec, target, module, attr, getattr(module, attr, None))


#: Files already loaded, by resolved path: `--decomposer f.py:a --policies f.py:b` runs f.py once, so what it
#: registers on import (its capabilities) is registered once.
_loaded_files: dict[Path, ModuleType] = {}


def _load_file(spec: str, path: Path) -> ModuleType:
    if not path.is_file():
        raise ConfigError(f"{spec!r}: no such file {path}")
    known = _loaded_files.get(path.resolve())
    if known is not None:
        return known
    mod_name = f"ledgerbus_user_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(mod_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"{spec!r}: cannot load {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[mod_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        raise ConfigError(f"{spec!r}: loading {path} failed: {where(exc)}") from None
    _loaded_files[path.resolve()] = module
    return module


def _import(spec: str, target: str) -> ModuleType:
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: modules next to you are importable
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"{spec!r}: cannot import {exc.name!r}") from None
    except Exception as exc:  # the user's module raised while importing: say where, in one line
        raise ConfigError(f"{spec!r}: importing {target} failed: {where(exc)}") from None


def where(exc: Exception) -> str:
    """An exception from user code in one line: its type, message, and the file and line it came from."""
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} ({exc.filename}, line {exc.lineno})"
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    at = f" ({tb.tb_frame.f_code.co_filename}, line {tb.tb_lineno})" if tb is not None else ""
    return f"{type(exc).__name__}: {exc}{at}"
