#!/usr/bin/env bash
# Install misync as a hardened systemd service (README "Run it as a service").
#
#   sudo bash deploy/install-service.sh          # from a checkout, as root
#
# Idempotent: run it again to upgrade; configuration and secrets that exist are kept.
# It puts everything where deploy/misync.service and config/misync.example.toml expect:
#
#   /opt/misync/                           virtualenv with the misync package (ExecStart)
#   /usr/share/misync/mappings/            account and feed mappings
#   /usr/share/doc/misync/                 README, CHANGELOG, the example configuration
#   /etc/misync/misync.toml                configuration (from config/misync.example.toml)
#   /etc/misync/feeds.toml                 feed file and column names (mappings/feeds.toml)
#   /etc/misync/credentials/               one secret per file, root only (LoadCredential=)
#   /srv/misync/feeds/                     where the feed job drops the CSV feeds
#   /usr/lib/sysusers.d/misync.conf        the misync system user (systemd-sysusers)
#   /etc/systemd/system/misync.service     the unit
#
# DESTDIR=/some/dir stages everything under that folder instead (used by the tests);
# MISYNC_SKIP_VENV=1 skips the virtualenv, MISYNC_SKIP_SYSTEMD=1 skips systemd-sysusers
# and systemctl (a container or chroot without systemd as PID 1).
#
# It ends with the next steps, derived from the installed configuration: every secret
# file it names (through /run/credentials/misync.service/NAME and the unit's
# LoadCredential=NAME:...), which of them are still empty, and the config check command.
# Run it again after turning on a section with a secret (e.g. [alerts.email]).
set -euo pipefail
cd "$(dirname "$0")/.."
D="${DESTDIR:-}"

if [ -z "$D" ] && [ "$(id -u)" -ne 0 ]; then
  echo "install-service: run as root (or set DESTDIR to stage into a folder)" >&2
  exit 2
fi

install -d -m 0755 "$D/opt/misync" "$D/usr/share/misync/mappings" "$D/usr/share/doc/misync" \
  "$D/etc/misync" "$D/srv/misync" "$D/usr/lib/sysusers.d" "$D/etc/systemd/system"
install -d -m 0700 "$D/etc/misync/credentials"
install -d -m 2750 "$D/srv/misync/feeds"

# the package, in its own virtualenv (Debian's python3 is kept clean)
if [ "${MISYNC_SKIP_VENV:-}" != "1" ]; then
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || {
    env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
      --no-install-recommends python3-venv >/dev/null
  }
  [ -x "$D/opt/misync/bin/python" ] || python3 -m venv "$D/opt/misync"
  "$D/opt/misync/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$D/opt/misync/bin/python" -m pip install -q --disable-pip-version-check --upgrade .
fi

# read-only data: the mappings and the documentation
install -m 0644 mappings/*.toml "$D/usr/share/misync/mappings/"
install -m 0644 README.md CHANGELOG.md config/misync.example.toml "$D/usr/share/doc/misync/"

# configuration: installed once, never overwritten (an upgrade keeps local changes)
[ -e "$D/etc/misync/misync.toml" ] || install -m 0640 config/misync.example.toml "$D/etc/misync/misync.toml"
[ -e "$D/etc/misync/feeds.toml" ] || install -m 0644 mappings/feeds.toml "$D/etc/misync/feeds.toml"

# secrets: one root-only file each, named as the unit's LoadCredential= lines; the audit
# key is generated, the others are left empty for the administrator to fill in
for name in ldap-password audit-key scim-token scim-client-secret smtp-password webhook-token; do
  f="$D/etc/misync/credentials/$name"
  if [ ! -e "$f" ]; then
    (umask 077; : > "$f")
    if [ "$name" = audit-key ]; then
      (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$f")
    fi
  fi
  chmod 0600 "$f"
done

# the system user and the unit
install -m 0644 deploy/misync.sysusers "$D/usr/lib/sysusers.d/misync.conf"
install -m 0644 deploy/misync.service "$D/etc/systemd/system/misync.service"
if [ -z "$D" ] && [ "${MISYNC_SKIP_SYSTEMD:-}" != "1" ]; then
  systemd-sysusers /usr/lib/sysusers.d/misync.conf
  chgrp misync /etc/misync/misync.toml /srv/misync/feeds
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
  fi
fi
# next steps: every secret file the installed configuration names (derived from the
# configuration and the unit's LoadCredential= lines, not a fixed list: an [alerts.email]
# or [alerts.webhook] turned on there needs its own), and which are still empty
python3 - "$D" <<'PY'
import re, sys, tomllib
from pathlib import Path

d = sys.argv[1]
cfg_path = Path(d + "/etc/misync/misync.toml")
unit = Path(d + "/etc/systemd/system/misync.service").read_text(encoding="utf-8")
creds = dict(re.findall(r"^LoadCredential=([\w.-]+):(\S+)$", unit, re.M))
prefix = "/run/credentials/misync.service/"
try:
    cfg = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
except (OSError, tomllib.TOMLDecodeError) as exc:
    print(f"install-service: cannot read /etc/misync/misync.toml ({exc}); fix it, then run"
          " misync config check", file=sys.stderr)
    cfg = {}
found: list[tuple[str, str]] = []  # (key, credential name)

def walk(node: object, where: str) -> None:
    if isinstance(node, dict):
        if node.get("enabled") is False:  # e.g. [notifications] enabled = false
            return
        for k, v in node.items():
            walk(v, f"{where}.{k}" if where else k)
    elif isinstance(node, str) and node.startswith(prefix):
        found.append((where, node[len(prefix):]))

walk(cfg, "")
todo, ready, env = [], [], []
for key, name in found:
    source = creds.get(name)
    if source is None:
        print(f"install-service: {key} = {prefix}{name}, but the unit has no "
              f"LoadCredential={name}:...; add one (systemctl edit misync)", file=sys.stderr)
        continue
    f = Path(d + source)
    filled = f.is_file() and f.read_text(errors="replace").strip()
    (ready if filled else todo).append(f"       {source}  ({key})")
    env.append(f"MISYNC_{key.upper().replace('.', '__')}={source}")
print(f"install-service: installed into {d or '/'}; next:")
print("  1. edit /etc/misync/misync.toml (directory URL, bind DN, scope, [daemon], alerts)")
if todo:
    print("  2. put each secret the configuration names in its file (one line):")
    print("\n".join(todo))
if ready:
    print("     already filled in (kept):")
    print("\n".join(ready))
print("  3. check it as the unit will, plus a bind to the directory (as root):")
print("       " + " ".join([*env, "/opt/misync/bin/misync -c /etc/misync/misync.toml",
                            "config check --connect"]))
print("  4. systemctl enable --now misync")
print("  (a secret you turn on later, e.g. [alerts.email] with a login, needs its file too:")
print("   run this installer again to list them)")
PY
