#!/usr/bin/env bash
# One command: install, then run misync on the sample feeds (config/demo/) against a
# throwaway local slapd seeded with a few accounts: plan -> apply -> plan (nothing left).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install.sh
exec .venv/bin/python -m connector.devtools.demo "$@"
