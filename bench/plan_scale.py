"""Plan cost vs. the directory read itself, at N people (SPEC.md "Scale").

Generates N entitled people (feeds) and N matching accounts (bulk-loaded into a private
slapd with slapadd), then times, in the same run:

- baseline: a raw paged ``ldapsearch`` dump of the managed scope;
- ``misync plan`` (feeds + policy + paged snapshot + diff), in-process.

Prints both and their ratio. Usage: ``.venv/bin/python bench/plan_scale.py [N]``
(default 20000). Not part of the timed test run.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connector import app, runs  # noqa: E402
from connector.devtools.slapd import LocalSlapd  # noqa: E402
from connector.settings import load_settings  # noqa: E402
from connector.state import StateStore  # noqa: E402

SUFFIX = "dc=mis,dc=example"
PEOPLE = f"ou=people,{SUFFIX}"


def write_feeds(d: Path, n: int) -> None:
    d.mkdir(parents=True)
    (d / "organizations.csv").write_text(
        "org_id,name,kind,wda\nCBO1,Goodwill,wioa_contractor,WDA-04\n"
    )
    (d / "contracts.csv").write_text(
        "contract_id,org_id,type,counterparty,business_case,signed_on,starts_on,ends_on,"
        "terminated_on,security_admin_approved_on,contracts_office_approved_on,data_owner_approved_on\n"
        "W-1,CBO1,wioa_services,lwdb,,2025-01-01,2025-01-01,,,,,\n"
        "DS-1,CBO1,data_sharing,lwdb,case mgmt,2025-01-01,2025-01-01,,,"
        "2025-01-01,2025-01-01,2025-01-01\n"
    )
    (d / "requesters.csv").write_text(
        "person_id,wda,designated_by,starts_on,ends_on\nR1,WDA-04,dir,2024-01-01,\n"
    )
    (d / "separations.csv").write_text("person_id,org_id,separated_at,reason\n")
    with (
        (d / "workers.csv").open("w") as w,
        (d / "training.csv").open("w") as t,
        (d / "ndas.csv").open("w") as nda,
        (d / "requests.csv").open("w") as r,
    ):
        w.write(
            "person_id,org_id,given_name,family_name,email,office,supervisor_id,status,separated_on\n"
        )
        t.write("person_id,course,completed_on\n")
        nda.write("person_id,signed_on\n")
        r.write(
            "request_id,action,person_id,requester_id,submitted_at,effective_on,status,profile,"
            "offices,cert_training,cert_profile_approved,cert_nda,supervisor_id\n"
        )
        w.write("R1,CBO1,Rita,Req,r@x.org,Renton,S,active,\n")
        for i in range(n):
            w.write(f"P{i},CBO1,Given{i},Family{i},p{i}@x.org,Renton,S,active,\n")
            t.write(f"P{i},MIS Basic,2025-02-01\n")
            nda.write(f"P{i},2025-02-02\n")
            r.write(
                f"Q{i},add,P{i},R1,2025-03-01T09:00:00-08:00,2025-03-02,approved,case-manager,"
                f"Renton,true,true,true,S\n"
            )


def write_ldif(path: Path, n: int) -> None:
    with path.open("w") as f:
        f.write(f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n")
        f.write(f"dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n")
        members = "".join(f"member: uid={f'g{i}family{i}'[:20]},{PEOPLE}\n" for i in range(n))
        f.write(
            f"dn: cn=mis-case-manager,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\n"
            f"cn: mis-case-manager\n{members}\n"
        )
        for i in range(n):
            uid = f"g{i}family{i}"[:20]
            f.write(
                f"dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\n"
                f"employeeNumber: P{i}\n"
                f"cn: Given{i} Family{i}\nsn: Family{i}\ngivenName: Given{i}\nmail: p{i}@x.org\n"
                f"displayName: Given{i} Family{i}\no: Goodwill\ndepartmentNumber: CBO1\n"
                f"employeeType: case-manager\nphysicalDeliveryOfficeName: Renton\n\n"
            )


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    work = Path(tempfile.mkdtemp(prefix="misync-bench-"))
    write_feeds(work / "feeds", n)
    write_ldif(work / "people.ldif", n)
    with LocalSlapd(work / "slapd", suffix=SUFFIX) as slapd:
        slapd.bulk_load(work / "people.ldif")
        pw = work / "pw"
        pw.write_text(slapd.root_password)
        cfg = work / "misync.toml"
        cfg.write_text(f"""
[feeds]
dir = "{work / "feeds"}"
max_age_hours = 0
[target]
mapping = "{ROOT / "mappings" / "openldap-ppolicy.toml"}"
[target.ldap]
url = "{slapd.url}"
bind_dn = "{slapd.root_dn}"
password_file = "{pw}"
base_dn = "{PEOPLE}"
group_base_dn = "ou=groups,{SUFFIX}"
[state]
dir = "{work / "state"}"
""")
        t0 = time.perf_counter()
        subprocess.run(
            [
                "ldapsearch",
                "-x",
                "-H",
                slapd.url,
                "-D",
                slapd.root_dn,
                "-w",
                slapd.root_password,
                "-b",
                PEOPLE,
                "-s",
                "one",
                "-E",
                "pr=1000/noprompt",
                "-LLL",
            ],
            stdout=subprocess.DEVNULL,
            check=True,
        )
        baseline = time.perf_counter() - t0

        rt = app.Runtime(load_settings(cfg))
        t0 = time.perf_counter()
        with StateStore(rt.settings.state.db) as store:
            plan, _events = runs.make_plan(rt, store, datetime.now(UTC))
        planned = time.perf_counter() - t0
    print(f"people/accounts      {n}")
    print(f"decisions            {dict(plan.decisions)}")
    print(f"plan summary         {plan.summary}")
    print(f"raw ldapsearch dump  {baseline:.2f} s (baseline)")
    print(f"misync plan          {planned:.2f} s  ({planned / baseline:.1f}x the baseline)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
