"""Synthetic but realistic feeds for N people, and the matching directory as LDIF.

``generate(work, n, drift=..., missing=..., orphans=...)`` writes ``work/feeds/*.csv``
(eight feeds, the demo layout) and ``work/people.ldif`` (for ``slapadd``):

- organizations spread over 12 workforce development areas (one LWDB and several
  WIOA contractors per area), each with a WIOA services contract and an approved
  data-sharing contract; one designated requester per area;
- N people: a roster row, ``MIS Basic`` (and for some a second course), an NDA, an
  approved add request by their area's requester with one or two offices and one of
  four profiles;
- 1% of the people separated (roster status and the separations feed); their accounts
  are locked in the directory, as misync would have left them;
- the directory holds one inetOrgPerson per person (in line with the mapping) and a
  groupOfNames per profile.

Drift makes the directory differ from what the policy gives:

- ``drift``: share of accounts whose office, display name and profile (so also group)
  are stale (one ``update`` each: the "first plan" case is ``drift=0.94``);
  ``stale_profile=False`` leaves profile and group right (attribute changes only);
- ``missing``: share of people with no account yet (``create``);
- ``orphans``: enabled accounts that correlate to nobody (``disable``).

Deterministic for a given (n, drift, missing, orphans, seed). Stdlib only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

SUFFIX = "dc=mis,dc=example"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
WDAS = [f"WDA-{i:02d}" for i in range(1, 13)]
PROFILES = ["case-manager", "case-manager", "case-manager", "supervisor", "data-entry", "reviewer"]
OFFICES = [
    "Seattle Downtown",
    "Bellevue",
    "Renton",
    "Tacoma",
    "Everett",
    "Spokane",
    "Yakima",
    "Olympia",
    "Vancouver",
    "Wenatchee",
]
GIVEN = ["Ana", "Ben", "Chen", "Dana", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jo", "Kai", "Lena"]
FAMILY = ["Ortiz", "Lee", "Nguyen", "Smith", "Garcia", "Kim", "Patel", "Brown", "Olsen", "Haddad"]
SEPARATED_SHARE = 0.01
ONE_OFFICE_SHARE = 0.7  # the rest work from two offices


@dataclass(frozen=True)
class Person:
    pid: str
    org: int
    given: str
    family: str
    email: str
    profile: str
    offices: tuple[str, ...]
    separated: bool

    @property
    def uid(self) -> str:
        return (self.given[0] + self.family).lower()[:20]


def _org_id(k: int) -> str:
    return f"ORG{k:03d}"


def _wda_of(k: int) -> str:
    return WDAS[k % len(WDAS)]


def people(n: int, orgs: int, seed: int) -> list[Person]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        given = GIVEN[i % len(GIVEN)]
        family = f"{FAMILY[(i // len(GIVEN)) % len(FAMILY)]}{i}"
        offices = tuple(
            sorted(set(rnd.sample(OFFICES, 1 if rnd.random() < ONE_OFFICE_SHARE else 2)))
        )
        out.append(
            Person(
                pid=f"P{i:07d}",
                org=i % orgs,
                given=given,
                family=family,
                email=f"{given.lower()}.{family.lower()}@example.org",
                profile=rnd.choice(PROFILES),
                offices=offices,
                separated=rnd.random() < SEPARATED_SHARE,
            )
        )
    return out


def write_feeds(d: Path, ppl: list[Person], orgs: int) -> None:
    d.mkdir(parents=True, exist_ok=True)
    with (d / "organizations.csv").open("w", encoding="utf-8") as f:
        f.write("org_id,name,kind,wda\n")
        for k in range(orgs):
            kind = "lwdb" if k < len(WDAS) else "wioa_contractor"
            f.write(f"{_org_id(k)},Organization {k} of {_wda_of(k)},{kind},{_wda_of(k)}\n")
    with (d / "contracts.csv").open("w", encoding="utf-8") as f:
        f.write(
            "contract_id,org_id,type,counterparty,business_case,signed_on,starts_on,ends_on,"
            "terminated_on,security_admin_approved_on,contracts_office_approved_on,"
            "data_owner_approved_on\n"
        )
        for k in range(orgs):
            o = _org_id(k)
            f.write(f"W-{o},{o},wioa_services,lwdb,,2025-01-01,2025-01-01,,,,,\n")
            f.write(
                f"DS-{o},{o},data_sharing,esd,Case management for WIOA participants,"
                "2025-01-01,2025-01-01,,,2025-01-01,2025-01-01,2025-01-01\n"
            )
    with (d / "requesters.csv").open("w", encoding="utf-8") as f:
        f.write("person_id,wda,designated_by,starts_on,ends_on\n")
        for w in WDAS:
            f.write(f"R{w[-2:]},{w},{w} Executive Director,2024-01-01,\n")
    with (
        (d / "workers.csv").open("w", encoding="utf-8") as wf,
        (d / "training.csv").open("w", encoding="utf-8") as tf,
        (d / "ndas.csv").open("w", encoding="utf-8") as nf,
        (d / "requests.csv").open("w", encoding="utf-8") as rf,
        (d / "separations.csv").open("w", encoding="utf-8") as sf,
    ):
        wf.write(
            "person_id,org_id,given_name,family_name,email,office,supervisor_id,status,"
            "separated_on\n"
        )
        tf.write("person_id,course,completed_on\n")
        nf.write("person_id,signed_on\n")
        rf.write(
            "request_id,action,person_id,requester_id,submitted_at,effective_on,status,"
            "profile,offices,cert_training,cert_profile_approved,cert_nda,supervisor_id\n"
        )
        sf.write("person_id,org_id,separated_at,reason\n")
        for w in WDAS:  # the requesters are people on the roster too
            wf.write(f"R{w[-2:]},{_org_id(WDAS.index(w))},Rita,Req{w[-2:]},r{w[-2:]}@x.org,")
            wf.write("Olympia,S,active,\n")
        for i, p in enumerate(ppl):
            o = _org_id(p.org)
            status, sep_on = ("separated", "2025-06-30") if p.separated else ("active", "")
            wf.write(
                f"{p.pid},{o},{p.given},{p.family},{p.email},{p.offices[0]},S{p.org},"
                f"{status},{sep_on}\n"
            )
            tf.write(f"{p.pid},MIS Basic,2025-02-01\n")
            if i % 5 == 0:
                tf.write(f"{p.pid},WIOA Title I-B,2025-02-15\n")
            nf.write(f"{p.pid},2025-02-02\n")
            rf.write(
                f"Q{i:07d},add,{p.pid},R{_wda_of(p.org)[-2:]},2025-03-01T09:00:00-08:00,"
                f"2025-03-02,approved,{p.profile},{';'.join(p.offices)},true,true,true,S{p.org}\n"
            )
            if p.separated:
                sf.write(f"{p.pid},{o},2025-06-30T17:00:00-07:00,resignation\n")


def _wrong_profile(p: Person) -> str:
    return "reviewer" if p.profile != "reviewer" else "case-manager"


def _entry(p: Person, orgs_names: dict[int, str], stale: bool, stale_profile: bool) -> str:
    offices = ("Walla Walla",) if stale else p.offices
    display = f"{p.given} {p.family}" + (" (old)" if stale else "")
    profile = _wrong_profile(p) if stale and stale_profile else p.profile
    lines = [
        f"dn: uid={p.uid},{PEOPLE}",
        "objectClass: inetOrgPerson",
        f"uid: {p.uid}",
        f"employeeNumber: {p.pid}",
        f"cn: {p.given} {p.family}",
        f"sn: {p.family}",
        f"givenName: {p.given}",
        f"mail: {p.email}",
        f"displayName: {display}",
        f"o: {orgs_names[p.org]}",
        f"departmentNumber: {_org_id(p.org)}",
        f"employeeType: {profile}",
        *(f"physicalDeliveryOfficeName: {o}" for o in offices),
        "description: Provisioned by misync",
    ]
    if p.separated:
        lines.append("pwdAccountLockedTime: 000001010000Z")
    return "\n".join(lines) + "\n\n"


def write_ldif(
    path: Path,
    ppl: list[Person],
    orgs: int,
    *,
    drift: float,
    missing: float,
    orphans: int,
    seed: int,
    stale_profile: bool = True,
) -> dict[str, int]:
    """Write the directory; return how many accounts of each kind it holds."""
    rnd = random.Random(seed + 1)
    names = {k: f"Organization {k} of {_wda_of(k)}" for k in range(orgs)}
    counts = {"accounts": 0, "stale": 0, "missing": 0, "orphans": orphans, "locked": 0}
    members: dict[str, list[str]] = {f"mis-{p}": [] for p in sorted(set(PROFILES))}
    with path.open("w", encoding="utf-8") as f:
        f.write(f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n")
        f.write(f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n\n")
        for p in ppl:
            if not p.separated and rnd.random() < missing:
                counts["missing"] += 1
                continue
            stale = not p.separated and rnd.random() < drift
            counts["stale"] += stale
            counts["locked"] += p.separated
            counts["accounts"] += 1
            f.write(_entry(p, names, stale, stale_profile))
            # a stale profile also puts the account in the wrong group
            group = _wrong_profile(p) if stale and stale_profile else p.profile
            members[f"mis-{group}"].append(f"uid={p.uid},{PEOPLE}")
        for k in range(orphans):
            uid = f"orphan{k}"
            f.write(
                f"dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\n"
                f"employeeNumber: X{k:07d}\ncn: Old Account {k}\nsn: Account{k}\n\n"
            )
        for cn, dns in members.items():
            gdn = f"cn={cn},{GROUPS}"
            body = "".join(f"member: {m}\n" for m in dns) or f"member: {gdn}\n"
            f.write(f"dn: {gdn}\nobjectClass: groupOfNames\ncn: {cn}\n{body}\n")
    return counts


def generate(
    work: Path,
    n: int,
    *,
    drift: float = 0.0,
    missing: float = 0.0,
    orphans: int = 0,
    seed: int = 1021,
    stale_profile: bool = True,
) -> dict[str, int]:
    """Write ``work/feeds`` and ``work/people.ldif``; return the directory's counts.
    ``stale_profile=False``: stale accounts differ in attributes only (no group moves)."""
    orgs = max(len(WDAS), n // 400)
    ppl = people(n, orgs, seed)
    write_feeds(work / "feeds", ppl, orgs)
    counts = write_ldif(
        work / "people.ldif",
        ppl,
        orgs,
        drift=drift,
        missing=missing,
        orphans=orphans,
        seed=seed,
        stale_profile=stale_profile,
    )
    return {"people": n, "organizations": orgs, **counts}
