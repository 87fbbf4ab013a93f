"""The README demo: misync on the sample feeds against a throwaway local slapd.

Starts a private slapd (never the system service) in a temp dir, loads
``config/demo/seed.ldif``, then runs the real ``misync`` command the way an operator
would: ``config check``, ``plan -o plan.json``, ``apply --plan plan.json``, a second
``plan`` (nothing left to do), ``explain`` for two people, and ``audit verify``.
JSON logs go to ``<tmp>/misync.log`` (journald in production).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="misync-demo", description=__doc__)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (state, audit, logs)")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="misync-demo-"))
    feeds = work / "feeds"
    shutil.copytree(DEMO / "feeds", feeds)  # fresh copies: fresh modification times
    log = work / "misync.log"
    try:
        with LocalSlapd(work / "slapd", suffix=SUFFIX) as slapd:
            slapd.add_ldif((DEMO / "seed.ldif").read_text(encoding="utf-8"))
            password = work / "ldap-password"
            password.write_text(slapd.root_password + "\n", encoding="utf-8")
            password.chmod(0o600)
            env = {
                **os.environ,
                "MISYNC_CONFIG": str(DEMO / "misync.toml"),
                "MISYNC_TARGET__LDAP__URL": slapd.url,
                "MISYNC_TARGET__LDAP__BIND_DN": slapd.root_dn,
                "MISYNC_TARGET__LDAP__PASSWORD_FILE": str(password),
                "MISYNC_FEEDS__DIR": str(feeds),
                "MISYNC_STATE__DIR": str(work / "state"),
            }
            print(f"demo: throwaway slapd at {slapd.url}, work dir {work}")
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
