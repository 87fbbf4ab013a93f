"""A private, throwaway OpenLDAP server for tests, the demo and benchmarks.

Runs Debian's ``slapd`` as a plain child process on a free 127.0.0.1 port with its
own config and database in a given directory: never the system service. Loads the
core, cosine, inetorgperson and nis schemas and the ppolicy overlay (so that
``pwdAccountLockedTime`` works).

Optional: ``tls`` (CA, certificate and key files) adds StartTLS on the ldap:// port and
an ldaps:// listener (``ldaps_url``), ``require_client_cert`` asks clients for a
certificate signed by that CA; ``access`` puts ``access to`` rules in the database
section (least-privilege tests); ``add_service_account`` adds a non-rootdn bind
identity.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from connector.devtools.process import ChildServer
from connector.errors import ExitCode, MisyncError

SLAPD = "/usr/sbin/slapd"
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")
INSTALL_HINT = "install Debian's slapd and ldap-utils (bash deploy/test.sh does)"


class SlapdError(MisyncError):
    """The throwaway slapd could not be started or used."""

    exit_code = ExitCode.UNAVAILABLE


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class SlapdTls:
    """PEM files: the CA that signed ``cert`` (also the CA client certificates need)."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    require_client_cert: bool = False


class LocalSlapd(ChildServer):
    def __init__(
        self,
        directory: Path,
        suffix: str = "dc=mis,dc=test",
        *,
        port: int | None = None,
        extra_config: str = "",
        tls: SlapdTls | None = None,
        access: str = "",
    ) -> None:
        for tool in (SLAPD, "ldapadd", "ldapsearch", "slapadd"):
            path = (
                tool
                if tool.startswith("/")
                else shutil.which(tool) or shutil.which(f"/usr/sbin/{tool}")
            )
            if not path or not Path(path).exists():
                raise SlapdError(f"{tool} not found: {INSTALL_HINT}")
        self.dir = directory
        self.suffix = suffix
        self.extra_config = extra_config  # appended to the database section (e.g. limits)
        self.root_dn = f"cn=admin,{suffix}"
        self.root_password = secrets.token_hex(12)  # hex: never starts with "-" on a command line
        self.tls = tls
        self.access = access  # "access to ..." rules for the database section
        self.port = port or free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.ldaps_port = free_port() if tls else 0
        self.ldaps_url = f"ldaps://127.0.0.1:{self.ldaps_port}" if tls else ""
        self._proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def _write_config(self) -> Path:
        db = self.dir / "db"
        db.mkdir(parents=True, exist_ok=True)
        includes = "\n".join(f"include /etc/ldap/schema/{s}.schema" for s in SCHEMAS)
        tls = ""
        if self.tls is not None:
            tls = (
                f"TLSCACertificateFile {self.tls.ca_file}\n"
                f"TLSCertificateFile {self.tls.cert_file}\n"
                f"TLSCertificateKeyFile {self.tls.key_file}\n"
                f"TLSVerifyClient {'demand' if self.tls.require_client_cert else 'try'}\n"
                # SASL EXTERNAL: a client certificate "cn=NAME" binds as cn=NAME,<suffix>
                f'authz-regexp "^cn=([^,]+)$" "cn=$1,{self.suffix}"\n'
            )
        conf = self.dir / "slapd.conf"
        conf.write_text(
            f"""{includes}
pidfile {self.dir}/slapd.pid
argsfile {self.dir}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
sizelimit unlimited
{tls}
database mdb
maxsize 2147483648
suffix "{self.suffix}"
rootdn "{self.root_dn}"
rootpw {self.root_password}
directory {db}
index objectClass eq
index employeeNumber eq
index uid eq
{self.access}
overlay ppolicy
{self.extra_config}
""",
            encoding="utf-8",
        )
        return conf

    def start(self) -> LocalSlapd:
        conf = self.dir / "slapd.conf"
        if not conf.exists():
            conf = self._write_config()
            self._slapadd_text(self._base_ldif())
        log = (self.dir / "slapd.log").open("ab")
        listen = f"ldap://127.0.0.1:{self.port}/"
        if self.tls is not None:
            listen += f" ldaps://127.0.0.1:{self.ldaps_port}/"
        self._proc = subprocess.Popen(
            [SLAPD, "-f", str(conf), "-h", listen, "-d", "0"],
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise SlapdError(f"slapd exited with {self._proc.returncode}: {self._log_tail()}")
            probe = subprocess.run(
                ["ldapsearch", "-x", "-H", self.url, "-b", "", "-s", "base", "-LLL", "1.1"],
                capture_output=True,
                check=False,
            )
            if probe.returncode == 0:
                return self
            time.sleep(0.05)
        self.stop()
        raise SlapdError(f"slapd did not answer on {self.url} within 15 s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return (self.dir / "slapd.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    # -- data ------------------------------------------------------------------------------

    def _base_ldif(self) -> str:
        first = self.suffix.split(",")[0]
        attr, value = first.split("=", 1)
        oc = (
            "dcObject\nobjectClass: organization\no: misync test"
            if attr == "dc"
            else "organization"
        )
        return f"dn: {self.suffix}\nobjectClass: {oc}\n{attr}: {value}\n"

    def _slapadd_text(self, ldif: str) -> None:
        path = self.dir / "load.ldif"
        path.write_text(ldif, encoding="utf-8")
        self._slapadd(path)

    def _slapadd(self, path: Path) -> None:
        res = subprocess.run(
            ["slapadd", "-q", "-f", str(self.dir / "slapd.conf"), "-l", str(path)],
            capture_output=True,
            check=False,
        )
        if res.returncode != 0:
            raise SlapdError(f"slapadd failed: {res.stderr.decode(errors='replace')[-2000:]}")

    def add_ldif(self, ldif: str) -> None:
        """Add entries through the running server (ldapadd as the rootdn)."""
        res = subprocess.run(
            ["ldapadd", "-x", "-H", self.url, "-D", self.root_dn, "-w", self.root_password],
            input=ldif.encode("utf-8"),
            capture_output=True,
            check=False,
        )
        if res.returncode != 0:
            raise SlapdError(
                f"ldapadd failed ({res.returncode}): {res.stderr.decode(errors='replace')}"
            )

    def add_service_account(self, rdn: str, password: str) -> str:
        """A simple-bind identity directly under the suffix (not the rootdn): its DN."""
        dn = f"{rdn},{self.suffix}"
        self.add_ldif(
            f"dn: {dn}\nobjectClass: applicationProcess\nobjectClass: simpleSecurityObject\n"
            f"{rdn.split('=', 1)[0]}: {rdn.split('=', 1)[1]}\nuserPassword: {password}\n"
        )
        return dn

    def bulk_load(self, ldif_path: Path) -> None:
        """Load a large LDIF offline with slapadd (stop, load, start): 100k entries in seconds."""
        self.stop()
        self._slapadd(ldif_path)
        self.start()


def main(argv: list[str] | None = None) -> int:
    """``python -m connector.devtools.slapd DIR``: run one until interrupted."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m connector.devtools.slapd",
        description="Run a throwaway private slapd on a free loopback port until Ctrl-C.",
    )
    parser.add_argument("directory", type=Path, help="its config and database (created)")
    parser.add_argument("--suffix", default="dc=mis,dc=test")
    args = parser.parse_args(argv)
    directory: Path = args.directory
    directory.mkdir(parents=True, exist_ok=True)
    with LocalSlapd(directory, suffix=args.suffix) as s:
        print(f"{s.url} rootdn={s.root_dn} password={s.root_password}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
