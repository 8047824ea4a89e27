"""Issue 22: `ledgerbus up --sync-interval` chooses the durability trade plainly. `always` (the default)
fsyncs before every ack; a duration is faster and is kept for the data directory, like the port. Every
step is the CLI in its own process, in a fresh directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_up_keeps_ledger import lb, lb_json, one_line_error

from ledgerbus.bus.server import configured_sync_interval


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    lb("down", cwd=tmp_path)


def _conf(project: Path) -> str | None:
    return configured_sync_interval((project / ".ledgerbus" / "nats-server.conf").read_text())


def test_up_with_a_sync_interval_starts_the_server_with_it_and_the_directory_keeps_it(project: Path) -> None:
    up = lb_json("up", "--sync-interval", "2m", cwd=project)
    assert up["started"] is True and up["syncInterval"] == "2m"
    assert _conf(project) == "2m"  # the config the running server was started with
    assert lb_json("status", cwd=project)["embedded"]["syncInterval"] == "2m"
    assert lb("down", cwd=project).returncode == 0
    again = lb_json("up", cwd=project)  # no flag: the directory's choice, not the default
    assert again["started"] is True and again["syncInterval"] == "2m" and _conf(project) == "2m"


def test_up_fsyncs_every_append_unless_told_otherwise(project: Path) -> None:
    up = lb_json("up", cwd=project)
    assert up["syncInterval"] == "always" and _conf(project) == "always"


@pytest.mark.parametrize("bad", ["2x", "soon", "0s", "-2m", ""])
def test_a_bad_sync_interval_is_one_line_and_exit_1_and_starts_nothing(project: Path, bad: str) -> None:
    out = lb("up", "--sync-interval", bad, cwd=project)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "--sync-interval" in one_line_error(out)
    assert not (project / ".ledgerbus" / "nats-server.conf").exists()


def test_a_running_server_with_another_sync_interval_is_not_passed_off_as_the_one_asked(project: Path) -> None:
    lb_json("up", cwd=project)
    out = lb("up", "--sync-interval", "2m", cwd=project)
    assert out.returncode == 1 and "ledgerbus down" in one_line_error(out)
    assert _conf(project) == "always"
