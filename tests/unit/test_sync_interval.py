"""The embedded server's sync_interval: `always` or a positive Go duration, nothing nats-server would refuse."""

from __future__ import annotations

import pytest

from ledgerbus.bus.server import ServerConfig, check_sync_interval, configured_sync_interval
from ledgerbus.errors import ConfigError


@pytest.mark.parametrize(("given", "kept"), [("always", "always"), ("ALWAYS", "always"), ("2m", "2m"),
                                             ("30s", "30s"), ("1h30m", "1h30m"), ("500ms", "500ms"), (" 2M ", "2m")])
def test_always_and_positive_durations_are_taken(given: str, kept: str) -> None:
    assert check_sync_interval(given) == kept


@pytest.mark.parametrize("bad", ["", "2", "2x", "m", "0s", "0m0s", "-1m", "2 m", "never"])
def test_anything_else_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="--sync-interval"):
        check_sync_interval(bad)


def test_the_rendered_config_says_the_interval_it_was_given(tmp_path: object) -> None:
    conf = ServerConfig(data_dir=tmp_path, sync_interval="2m").render(4222)  # type: ignore[arg-type]
    assert configured_sync_interval(conf) == "2m"
    assert configured_sync_interval("port: 4222\n") is None
