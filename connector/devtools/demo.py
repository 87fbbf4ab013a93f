"""The README demo: misync on the sample feeds against a throwaway local directory.

``--target ldap`` (default) starts a private slapd (never the system service) and loads
``config/demo/seed.ldif``; ``--target scim`` starts scim2-server on loopback and loads
its twin ``config/demo/seed-scim.json``. Then the demo runs the real ``misync``
command the way an operator would: ``config check``, ``plan -o plan.json``,
``apply --plan plan.json``, a second ``plan`` (nothing left to do), ``explain`` for
two people, and ``audit verify``.
JSON logs go to ``<tmp>/misync.log`` (journald in production).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from connector.devtools.scim_server import LocalScimServer
from connector.devtools.slapd import LocalSlapd

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "demo"
SUFFIX = "dc=mis,dc=example"


def _run(args: list[str], env: dict[str, str], log: Path, ok: tuple[int, ...] = (0,)) -> int:
    print(f"\n$ misync {' '.join(args)}", flush=True)
    with log.open("a", encoding="utf-8") as err:
        proc = subprocess.run(
            [sys.executable, "-m", "connector.cli", *args], env=env, stderr=err, check=False
        )
    if proc.returncode not in ok:
        print(
            f"demo: `misync {' '.join(args)}` exited {proc.returncode}; see {log}", file=sys.stderr
        )
        raise SystemExit(proc.returncode)
    return proc.returncode


@contextmanager
def _directory(kind: str, work: Path) -> Iterator[dict[str, str]]:
    """Start and seed the throwaway directory; yield the MISYNC_* variables that point at it."""
    if kind == "ldap":
        with LocalSlapd(work / "slapd", suffix=SUFFIX) as slapd:
            slapd.add_ldif((DEMO / "seed.ldif").read_text(encoding="utf-8"))
            password = work / "ldap-password"
            password.write_text(slapd.root_password + "\n", encoding="utf-8")
            password.chmod(0o600)
            yield {
                "MISYNC_TARGET__LDAP__URL": slapd.url,
                "MISYNC_TARGET__LDAP__BIND_DN": slapd.root_dn,
                "MISYNC_TARGET__LDAP__PASSWORD_FILE": str(password),
            }
        return
    with LocalScimServer(work / "scim") as server:
        seed = json.loads((DEMO / "seed-scim.json").read_text(encoding="utf-8"))
        server.seed(seed["users"], seed["groups"])
        token = work / "scim-token"
        token.write_text(server.token + "\n", encoding="utf-8")
        token.chmod(0o600)
        yield {
            "MISYNC_TARGET__KIND": "scim",
            "MISYNC_TARGET__MAPPING": str(ROOT / "mappings" / "scim-core.toml"),
            "MISYNC_TARGET__SCIM__BASE_URL": server.url,
            "MISYNC_TARGET__SCIM__TOKEN_FILE": str(token),
        }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="misync-demo", description=__doc__)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (state, audit, logs)")
    ap.add_argument("--target", choices=("ldap", "scim"), default="ldap", help="which directory")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="misync-demo-"))
    feeds = work / "feeds"
    shutil.copytree(DEMO / "feeds", feeds)  # fresh copies: fresh modification times
    log = work / "misync.log"
    try:
        with _directory(args.target, work) as target_env:
            env = {
                **os.environ,
                **target_env,
                "MISYNC_CONFIG": str(DEMO / "misync.toml"),
                "MISYNC_FEEDS__DIR": str(feeds),
                "MISYNC_STATE__DIR": str(work / "state"),
            }
            print(f"demo: throwaway {args.target} directory, work dir {work}")
            _run(["config", "check"], env, log)
            _run(["plan", "-o", str(work / "plan.json")], env, log)
            _run(["apply", "--plan", str(work / "plan.json")], env, log)
            print("\n# a second plan after apply: nothing left to do")
            _run(["plan", "--detailed-exitcode"], env, log)
            _run(["explain", "P1006"], env, log)
            _run(["explain", "P1003"], env, log)
            _run(["audit", "verify"], env, log)
            kept = (
                f"JSON logs: {log}" if args.keep else "run with --keep to keep the logs and state"
            )
            print(f"\ndemo: done. {kept}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"demo: kept {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
