"""ledgerbus benchmarks: `python -m bench` (see bench/__main__.py). Never part of the test run's pass/fail."""
