#!/usr/bin/env bash
# Install what misync needs on a Debian machine: Debian's slapd and ldap-utils (the demo
# and the tests start a private, throwaway slapd; the system service is never used),
# a virtualenv in .venv, and the package: `install.sh test` adds the test tools,
# `install.sh demo` the demo's SCIM server. `install.sh test` also installs Debian's
# postgresql (the tests start a private server; the system service is never used).
# Idempotent: safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test="${1:-}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

apt_need=()
[ -x /usr/sbin/slapd ] || apt_need+=(slapd)
command -v ldapadd >/dev/null 2>&1 || apt_need+=(ldap-utils)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_need+=(python3-venv)
# the service tests check deploy/misync.service with systemd-analyze (verify, security)
if [ "$want_test" = "test" ]; then command -v systemd-analyze >/dev/null 2>&1 || apt_need+=(systemd); fi
# the HTML report test loads the page in a real headless Chromium
if [ "$want_test" = "test" ]; then command -v chromium >/dev/null 2>&1 || apt_need+=(chromium); fi
# the state store's contract tests start a private PostgreSQL server (initdb, pg_ctl)
if [ "$want_test" = "test" ]; then ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_need+=(postgresql); fi
if [ ${#apt_need[@]} -gt 0 ]; then
  echo "misync install: apt-get install ${apt_need[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${apt_need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
if [ "$want_test" = "test" ] || [ "$want_test" = "demo" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$want_test]"
else
  .venv/bin/python -m pip install -q --disable-pip-version-check -e .
fi
echo "misync install: ready ($(.venv/bin/misync --version))"
