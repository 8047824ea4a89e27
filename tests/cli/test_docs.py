"""Every command has help text with an example and is documented in README (as sqlite-utils checks);
the README's agent and its test work as written, in a fresh directory, through the pytest plugin."""

import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer

from ledgerbus.cli.main import app

README = Path(__file__).resolve().parents[2] / "README.md"


def commands() -> list[tuple[str, click.Command]]:
    root = typer.main.get_command(app)
    out = []

    def walk(cmd: click.Command, path: list[str], ctx: click.Context) -> None:
        if hasattr(cmd, "list_commands"):  # a group (typer's groups are not always click.Group)
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                walk(sub, [*path, name], click.Context(sub, parent=ctx))
        else:
            out.append((" ".join(path), cmd))

    walk(root, [], click.Context(root))
    return out


def test_there_are_commands_to_check():
    names = {n for n, _ in commands()}
    assert {"publish", "request", "tail", "stalls", "agents", "conversations", "asyncapi", "up", "down", "status",
            "agent run", "orchestrator run", "schemas show"} <= names


@pytest.mark.parametrize("name,cmd", commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_command_has_help_and_is_in_readme(name, cmd):
    assert cmd.help and len(cmd.help.strip().splitlines()[0]) > 10, f"`ledgerbus {name}` has no help text"
    assert "example" in cmd.help.lower(), f"`ledgerbus {name}` --help shows no example"
    readme = README.read_text()
    assert f"ledgerbus {name}" in readme, f"`ledgerbus {name}` is not documented in README.md"
    for param in cmd.params:
        if isinstance(param, click.Option) and param.name not in ("help",):
            assert param.help, f"`ledgerbus {name}` option {param.opts[0]} has no help"


def _block(section: str, first_line: str) -> str:
    """The fenced code block in README section `section` whose first line is `first_line`."""
    text = README.read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    for block in re.findall(r"```python\n(.*?)```", body, re.S):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"README section {section!r} has no python block starting with {first_line!r}")


def test_readme_agent_example_is_short():
    assert len(_block("Writing an agent", "# echo.py").strip().splitlines()) < 30


@pytest.mark.slow
def test_readme_agent_and_its_test_pass_in_a_fresh_directory(tmp_path):
    (tmp_path / "echo.py").write_text(_block("Writing an agent", "# echo.py"))
    (tmp_path / "test_echo.py").write_text(_block("Writing an agent", "# test_echo.py"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "LEDGERBUS_"))}
    # A user's project: no ini file, so pytest-asyncio runs in its default (strict) mode; the plugin
    # is found through its pytest11 entry point.
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_echo.py"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout
    # And it is a real test: a wrong expectation fails.
    (tmp_path / "test_echo.py").write_text(_block("Writing an agent", "# test_echo.py").replace('"HI"', '"hi"'))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_echo.py"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "1 failed" in run.stdout, run.stdout + run.stderr


def _bash_lines(after: str) -> list[str]:
    text = README.read_text().split(after, 1)[1]
    return [ln for block in re.findall(r"```bash\n(.*?)```", text, re.S) for ln in block.splitlines()]


def test_readme_says_to_activate_the_venv_before_its_first_bare_command():
    text = README.read_text()
    after_quickstart = text.split("## Concepts", 1)[0]
    activate = ". .venv/bin/activate"
    assert activate in after_quickstart, "README must say once how the later commands find `ledgerbus`"
    first_bare = min(text.index(f"\n{ln}") for ln in _bash_lines("## Concepts") if ln.startswith("ledgerbus "))
    assert text.index(activate) < first_bare


def test_readme_debugging_id_line_works_as_written(tmp_path):
    from ledgerbus.eventstore.sqlite import SQLiteEventStore
    from ledgerbus.schemas.codes import Action
    from ledgerbus.schemas.envelope import answer, new_request

    line = next(ln for ln in _bash_lines("## Debugging with the ledger") if ln.startswith("ID="))
    (tmp_path / ".ledgerbus").mkdir()
    store = SQLiteEventStore(tmp_path / ".ledgerbus" / "ledger.db")
    import msgspec

    reqs = [msgspec.structs.replace(new_request(sender="cli", recipient="research", capability="research.search",
                                                payload={"topic": t}), timestamp=1_700_000_000_000 + i * 60_000)
            for i, t in enumerate(("a", "b"))]
    store.append_envelopes([e for r in reqs for e in (r, answer(r, Action.RESPONSE, payload={}))])
    store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERBUS_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the activated venv
    out = subprocess.run(["bash", "-c", f'{line}\necho "$ID"'], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == reqs[1].conversation_id
