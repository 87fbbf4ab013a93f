#!/usr/bin/env bash
# One command: install everything the tests need (slapd, ldap-utils, the package with its
# test tools), then run the linters and the whole test suite against real servers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install.sh test
echo "== ruff"; .venv/bin/ruff check .
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; exec .venv/bin/python -m pytest "$@"
