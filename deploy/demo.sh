#!/usr/bin/env bash
# One command: install, then run misync on the sample feeds (config/demo/) against a
# throwaway local slapd seeded with a few accounts: plan -> apply -> plan (nothing left).
# `bash deploy/demo.sh --target scim` does the same against scim2-server on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install.sh demo
exec .venv/bin/python -m connector.devtools.demo "$@"
