"""Assertions shared by the CLI tests."""

from click.testing import Result


def one_line_error(result: Result) -> str:
    """The single stderr line of a failed command, after checking it is exactly one line and no traceback."""
    err = result.stderr.strip()
    assert "Traceback" not in result.output, result.output
    assert err.startswith("error: "), result.output
    assert len(err.splitlines()) == 1, err
    return err
