"""What every test folder needs before its modules import ledgerbus."""

import os

# pytest-xdist gives each worker COLUMNS (the controller's terminal width, 80 without one). The CLI's
# console reads it once, at import, so tests on a worker would see a narrower table than a run in one
# process; they run as the suite runs in CI, piped and with no COLUMNS.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.pop("COLUMNS", None)
