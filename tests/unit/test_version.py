"""The version has one home in the code, ledgerbus/_version.py, and it is the distribution's."""

from importlib import metadata

import ledgerbus
from ledgerbus._version import __version__


def test_the_package_version_is_the_distributions() -> None:
    assert __version__ == metadata.version("ledgerbus")
    assert ledgerbus.__version__ is __version__
