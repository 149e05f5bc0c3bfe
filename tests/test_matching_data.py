"""A small deterministic generator of standardised customer records with gen_customers-like noise
(typos, nicknames, initials, swapped names, day/month and year slips, moves, households with a
shared surname / address / landline / mailbox, twins, missing fields). Test helper only."""
from __future__ import annotations

import random

GIVEN = ["William", "Robert", "James", "Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Susan",
         "Jessica", "Thomas", "Katherine", "Alexander", "José", "Zoë", "Michael", "Daniel", "Anna",
         "Jürgen", "Aoife", "Renée", "Björn", "Hans", "Olga", "Priya", "Kenji", "Fatima", "Ole"]
NICK = {"William": "Bill", "Robert": "Bob", "James": "Jim", "Patricia": "Pat", "Jennifer": "Jen",
        "Elizabeth": "Liz", "Susan": "Sue", "Thomas": "Tom", "Katherine": "Kate", "Alexander": "Alex",
        "Michael": "Mike", "Daniel": "Dan"}
FAMILY = ["Smith", "Smith", "Smith", "Jones", "Jones", "Brown", "van den Berg", "O'Brien", "Müller",
          "García", "Nguyen", "Kowalczyk", "Fitzgerald-Hayes", "Okonkwo", "Zamora", "Lindqvist",
          "Papadopoulos", "Ng", "Abara", "Quenneville", "Yilmaz", "Haddad", "Moreau", "Rossi"]
STREETS = ["Main Street", "High St", "Oak Avenue", "Station Road", "Hauptstraße", "rue de la Paix",
           "Calle Mayor", "Elm Lane", "Kings Drive", "Mill Rd"]
CITIES = [("Springfield", "12345"), ("London", "SW1A1AA"), ("Berlin", "10115"), ("Paris", "75001"),
          ("Madrid", "28013"), ("Sydney", "2000"), ("Leeds", "LS11BA"), ("Utrecht", "3511AB")]
KEYS = "qwertyuiopasdfghjklzxcvbnm"


def typo(rng: random.Random, s: str) -> str:
    if len(s) < 3:
        return s
    i = rng.randrange(len(s))
    op = rng.random()
    if op < 0.3:
        return s[:i] + rng.choice(KEYS) + s[i + 1:]
    if op < 0.6:
        return s[:i] + s[i + 1:]
    if op < 0.8:
        return s[:i] + rng.choice(KEYS) + s[i:]
    return s[:i] + s[i + 1:i + 2] + s[i:i + 1] + s[i + 2:]


def person(rng: random.Random, pid: int, household: dict | None = None) -> dict:
    given = rng.choice(GIVEN)
    family = household["family_name"] if household else rng.choice(FAMILY)
    y, m, d = rng.randint(1940, 2005), rng.randint(1, 12), rng.randint(1, 28)
    if household and rng.random() < 0.2:
        y, m, d = household["dob"]                       # twins
    city, pc = rng.choice(CITIES)
    addr = household["addr"] if household else dict(
        address_line1=f"{rng.randint(1, 300)} {rng.choice(STREETS)}", locality=city, postcode=pc,
        country="GB")
    phone = household["phone"] if household and rng.random() < 0.7 else f"+44{rng.randint(10**9, 10**10 - 1)}"
    email = f"{given.lower()}.{family.lower().replace(' ', '')}{pid}@example.com"
    if household and rng.random() < 0.2:
        email = household["email"]                       # family mailbox
    return dict(pid=pid, given_name=given, family_name=family, dob=(y, m, d), email=email, phone=phone,
                national_id=f"{rng.randint(100, 899)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}", **addr)


def render(rng: random.Random, p: dict) -> dict:
    r = {k: v for k, v in p.items() if k not in ("pid", "dob")}
    y, m, d = p["dob"]
    if rng.random() < 0.05 and d <= 12:
        m, d = d, m
    if rng.random() < 0.05:
        y += rng.choice([-1, 1, -10, 10])
    r["date_of_birth"] = f"{y:04d}-{m:02d}-{d:02d}"
    for f in ("given_name", "family_name", "address_line1", "locality", "email"):
        if rng.random() < 0.08:
            r[f] = typo(rng, r[f])
    if rng.random() < 0.2:
        r["given_name"] = NICK.get(r["given_name"], r["given_name"])
    if rng.random() < 0.05:
        r["given_name"] = r["given_name"][0] + "."
    if rng.random() < 0.03:
        r["given_name"], r["family_name"] = r["family_name"], r["given_name"]
    if rng.random() < 0.1:
        r["given_name"] = r["given_name"].upper()
    if rng.random() < 0.1:
        r["address_line1"] = r["address_line1"].replace("Street", "St").replace("Road", "Rd")
    if rng.random() < 0.1:                                # moved
        city, pc = rng.choice(CITIES)
        r.update(address_line1=f"{rng.randint(1, 300)} {rng.choice(STREETS)}", locality=city, postcode=pc)
    for f, pdrop in (("date_of_birth", 0.3), ("email", 0.2), ("phone", 0.3), ("national_id", 0.8),
                     ("address_line1", 0.2), ("postcode", 0.2), ("family_name", 0.05), ("given_name", 0.02),
                     ("locality", 0.2)):
        if rng.random() < pdrop:
            r[f] = None
    return r


def make_records(n_people: int = 600, seed: int = 3) -> list[dict]:
    """Records with 'id' and 'entity' plus the 12 standardised attributes (some None)."""
    rng = random.Random(seed)
    people, households = [], []
    for pid in range(n_people):
        hh = rng.choice(households) if households and rng.random() < 0.25 else None
        p = person(rng, pid, hh)
        if hh is None and rng.random() < 0.3:
            households.append(dict(family_name=p["family_name"], dob=p["dob"], phone=p["phone"], email=p["email"],
                                   addr={k: p[k] for k in ("address_line1", "locality", "postcode", "country")}))
        people.append(p)
    out = []
    for p in people:
        for _ in range(rng.choice([1, 2, 2, 3, 4])):
            r = render(rng, p)
            r.update(id=len(out), entity=p["pid"])
            out.append(r)
    return out
