"""A private, throwaway 389 Directory Server for the opt-in ``ds389`` test profile.

Debian's ``389-ds-base`` (``apt-get install -y 389-ds-base``, 2.3) creates instances
with ``dscreate`` and drives them with ``dsctl``. Both read their paths from
``defaults.inf``; a *prefix install* (the ``PREFIX`` environment variable, honoured by
lib389) reads ``$PREFIX/share/dirsrv/inf/defaults.inf`` instead of the system one. This
module writes such a prefix in a folder of its own, so that nothing outside that folder
is created or edited (no ``/etc/dirsrv/slapd-*``, no ``/var/lib/dirsrv``, no systemd
unit, no edit of ``/usr/share/dirsrv/inf/defaults.inf``):

- ``with_systemd = 0`` (there is no systemd as PID 1 here: ``dsctl`` starts ``ns-slapd``
  itself) and every instance path (configuration, database, logs, run and lock files,
  the LDAPI socket) under the folder;
- the instance's ``dse.ldif`` template (``template-dse.ldif``, copied into the prefix's
  data folder; the other data files are links to the system ones) gets
  ``nsslapd-listenhost: 127.0.0.1`` and small fixed caches
  (``nsslapd-cache-autosize: 0``, a 16 MiB database cache) *before* the server first
  starts, so it never listens on other addresses nor sizes its caches to a quarter of
  the machine's memory;
- the server runs as root (``user = root``): the folder is a private test folder.

The one thing left outside the folder is the server's own statistics semaphore
(``/dev/shm/sem.slapd-NAME.stats``), made and removed by the server (``dsctl remove``).
Creating an instance takes ~10-16 s: the profile keeps one per test session.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from connector.devtools.slapd import free_port
from connector.errors import ExitCode, MisyncError

SYSTEM = Path("/usr/share/dirsrv")
INSTALL_HINT = "apt-get install -y 389-ds-base (root; the ds389 profile needs it)"


class Ds389Error(MisyncError):
    """The throwaway 389 DS could not be created or used."""

    exit_code = ExitCode.UNAVAILABLE


def available() -> str | None:
    """None when 389 DS can be run here, else why not."""
    for tool in ("dscreate", "dsctl", "ldapmodify", "ldapsearch"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} not found: {INSTALL_HINT}"
    if not (SYSTEM / "inf" / "defaults.inf").is_file():
        return f"{SYSTEM}/inf/defaults.inf not found: {INSTALL_HINT}"
    if os.geteuid() != 0:
        return "dscreate must run as root"
    return None


class LocalDs389:
    """One 389 DS instance in ``directory``; ``with LocalDs389(dir) as ds:`` creates,
    starts, and finally removes it."""

    def __init__(self, directory: Path, suffix: str = "dc=mis,dc=example") -> None:
        why = available()
        if why is not None:
            raise Ds389Error(why)
        self.dir = directory
        self.prefix = directory / "p"
        self.suffix = suffix
        self.name = f"misync{secrets.token_hex(3)}"
        self.root_dn = "cn=Directory Manager"
        self.root_password = secrets.token_hex(12)
        self.port = free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self._created = False

    # -- the prefix ------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        return {**os.environ, "PREFIX": str(self.prefix)}

    def _write_prefix(self) -> None:
        p = self.prefix
        inf = p / "share" / "dirsrv" / "inf"
        data = p / "share" / "dirsrv" / "data"
        inf.mkdir(parents=True)
        data.mkdir(parents=True)
        redirect = {
            "with_systemd": "0",
            "data_dir": f"{p}/share",
            "tmp_dir": str(p / "tmp"),  # inside the private folder
            "sysconf_dir": f"{p}/etc",
            "initconfig_dir": f"{p}/etc/default",
            "config_dir": f"{p}/etc/dirsrv/slapd-{{instance_name}}",
            "local_state_dir": f"{p}/var",
            "run_dir": f"{p}/run/dirsrv",
            "ldapi": f"{p}/run/slapd-{{instance_name}}.socket",
            "pid_file": f"{p}/run/dirsrv/slapd-{{instance_name}}.pid",
            "inst_dir": f"{p}/lib/dirsrv/slapd-{{instance_name}}",
            "tmpfiles_d": f"{p}/etc/tmpfiles.d",
            "schema_dir": f"{p}/etc/dirsrv/slapd-{{instance_name}}/schema",
            "cert_dir": f"{p}/etc/dirsrv/slapd-{{instance_name}}",
            "lock_dir": f"{p}/run/lock/dirsrv/slapd-{{instance_name}}",
            "log_dir": f"{p}/var/log/dirsrv/slapd-{{instance_name}}",
            "access_log": f"{p}/var/log/dirsrv/slapd-{{instance_name}}/access",
            "audit_log": f"{p}/var/log/dirsrv/slapd-{{instance_name}}/audit",
            "error_log": f"{p}/var/log/dirsrv/slapd-{{instance_name}}/errors",
            "security_log": f"{p}/var/log/dirsrv/slapd-{{instance_name}}/security",
            "db_dir": f"{p}/var/lib/dirsrv/slapd-{{instance_name}}/db",
            "db_home_dir": f"{p}/shm/slapd-{{instance_name}}",
            "backup_dir": f"{p}/var/lib/dirsrv/slapd-{{instance_name}}/bak",
            "ldif_dir": f"{p}/var/lib/dirsrv/slapd-{{instance_name}}/ldif",
        }
        lines = []
        for line in (SYSTEM / "inf" / "defaults.inf").read_text(encoding="utf-8").splitlines():
            key = line.split("=", 1)[0].strip()
            lines.append(f"{key} = {redirect.pop(key)}" if key in redirect else line)
        if redirect:
            raise Ds389Error(f"defaults.inf lacks {sorted(redirect)}: not a 389 DS 2.x layout?")
        (inf / "defaults.inf").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for f in (SYSTEM / "data").iterdir():
            if f.name != "template-dse.ldif":
                (data / f.name).symlink_to(f)
        template = (SYSTEM / "data" / "template-dse.ldif").read_text(encoding="utf-8")
        template = template.replace(
            "nsslapd-port: %ds_port%\n", "nsslapd-port: %ds_port%\nnsslapd-listenhost: 127.0.0.1\n"
        ).replace(
            "nsslapd-backend-implement: %db_lib%\n",
            "nsslapd-backend-implement: %db_lib%\nnsslapd-cache-autosize: 0\n"
            "nsslapd-dbcachesize: 16777216\n",
        )
        if "nsslapd-listenhost: 127.0.0.1" not in template or "autosize: 0" not in template:
            raise Ds389Error("template-dse.ldif is not as expected: cannot pin the listen host")
        (data / "template-dse.ldif").write_text(template, encoding="utf-8")
        # dscreate copies the instance's schema and configuration templates from here
        shutil.copytree("/etc/dirsrv", p / "etc" / "dirsrv", symlinks=True)
        shutil.rmtree(p / "etc" / "dirsrv" / "ssca", ignore_errors=True)
        for sub in (p / "etc" / "dirsrv").iterdir():
            if sub.name.startswith("slapd-"):  # a system instance's folder: not ours
                shutil.rmtree(sub)

    # -- lifecycle ---------------------------------------------------------------------------

    def _run(self, *cmd: str, input_text: str | None = None, timeout: float = 120) -> str:
        r = subprocess.run(
            cmd,
            env=self._env(),
            input=input_text,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if r.returncode != 0:
            raise Ds389Error(f"{' '.join(cmd[:3])} failed ({r.returncode}): {r.stderr[-3000:]}")
        return r.stdout

    def create(self) -> Self:
        self._write_prefix()
        inf = self.dir / "instance.inf"
        inf.write_text(
            f"""[general]
full_machine_name = localhost
start = True
[slapd]
instance_name = {self.name}
port = {self.port}
secure_port = {free_port()}
root_dn = {self.root_dn}
root_password = {self.root_password}
self_sign_cert = False
user = root
group = root
[backend-userroot]
suffix = {self.suffix}
sample_entries = no
create_suffix_entry = True
""",
            encoding="utf-8",
        )
        inf.chmod(0o600)
        self._created = True
        self._run("dscreate", "from-file", str(inf), timeout=300)
        self.wait()
        # a small entry cache for the one backend (the database cache is in the template)
        self.modify(
            "dn: cn=userRoot,cn=ldbm database,cn=plugins,cn=config\nchangetype: modify\n"
            "replace: nsslapd-cachememsize\nnsslapd-cachememsize: 33554432\n"
        )
        return self

    def wait(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = subprocess.run(
                ["ldapsearch", "-x", "-H", self.url, "-b", "", "-s", "base", "-LLL", "1.1"],
                capture_output=True,
                check=False,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise Ds389Error(f"389 DS did not answer on {self.url} within {timeout:g} s")

    def stop(self) -> None:
        self._run("dsctl", self.name, "stop")

    def start(self) -> None:
        self._run("dsctl", self.name, "start")
        self.wait()

    def restart(self) -> None:
        self._run("dsctl", self.name, "restart")
        self.wait()

    def remove(self) -> None:
        if self._created:
            self._created = False
            try:
                self._run("dsctl", self.name, "remove", "--do-it")
            finally:
                shutil.rmtree(self.prefix, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.create()
        except BaseException:
            self.remove()
            raise

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()

    # -- data (as the Directory Manager) -----------------------------------------------------

    def modify(self, ldif: str, *, continuous: bool = False) -> str:
        """``ldapmodify`` an LDIF with changetype records (entries without one are adds)."""
        args = ["ldapmodify", "-x", "-H", self.url, "-D", self.root_dn, "-w", self.root_password]
        if continuous:
            args.append("-c")
        return self._run(*args, "-a", input_text=ldif)

    def add_service_account(self, rdn: str, password: str) -> str:
        dn = f"{rdn},{self.suffix}"
        attr, value = rdn.split("=", 1)
        self.modify(
            f"dn: {dn}\nobjectClass: top\nobjectClass: applicationProcess\n"
            f"objectClass: simpleSecurityObject\n{attr}: {value}\nuserPassword: {password}\n"
        )
        return dn

    def dsidm(self, *args: str) -> str:
        """``dsidm`` on this instance (over its LDAPI socket, as root), e.g.
        ``dsidm("role", "lock", ROLE_DN)``."""
        return self._run("dsidm", self.name, "-b", self.suffix, *args)

    def log_tail(self) -> str:
        errors = self.prefix / "var" / "log" / "dirsrv" / f"slapd-{self.name}" / "errors"
        try:
            return errors.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"
