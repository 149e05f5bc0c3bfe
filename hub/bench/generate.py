"""Synthetic multi-source customer data with known truth, at any scale, deterministic per seed.

Each person is drawn once (name by national frequency, birth date, address, phones, email, national
id) and then appears in several source systems, each holding them in its own way:

- formats: date order and pattern (2026-07-02, 02/07/2026, 07/02/26, 02.07.2026), phone style
  (E.164, national, 00-international, digits only), name casing (as typed, ALL CAPS, lower),
  country as a code or a name, street types spelled out or abbreviated;
- coverage and missing fields per system, empty strings for nulls, stale values (an old address,
  email or phone kept by the systems that never heard of the move, with an older updatedAt);
- noise: keyboard typos, dropped and doubled letters, transposed letters, nicknames (William/Bill),
  initials, given and family name swapped, day and month swapped, a wrong birth year;
- life: marriage (older systems keep the maiden name), moves, a second account in one system;
- hard negatives: households share the surname, the address and the landline; twins share the
  birth date as well; family mailboxes are shared; common names repeat (national frequencies).

Profiles choose the attribute mix so a user can approximate their own data (PROFILES).

Output folder (`write`):
  systems.json      [{name, dateOrder, defaultCountry, trust}], ready for registerSourceSystem
  <system>.jsonl    one SourceRecordInput per line: {"key", "updatedAt", "attributes": {...}}
  truth.csv         system,key,entity,household: the person each record describes
  manifest.json     people, records, profile, seed, and how many of each feature were made

Name, street and city pools come from Faker's locale data (built once per seed, about a second);
everything else is plain Python over those pools with one random.Random, so a seed always gives
the same files.
"""
from __future__ import annotations

import bisect
import csv
import dataclasses
import datetime as dt
import itertools
import json
import os
import random
import time
import unicodedata
from collections import Counter
from collections.abc import Callable

ATTRIBUTES = ("givenName", "familyName", "dateOfBirth", "email", "phone", "addressLine1", "addressLine2",
              "locality", "postcode", "region", "country", "nationalId")
ADDRESS = ("addressLine1", "addressLine2", "locality", "postcode", "region", "country")

PROFILES: dict[str, tuple[str, frozenset[str]]] = {
    "full": ("every attribute: names, birth date, email, phone, address, national id (billing, some crm)",
             frozenset(ATTRIBUTES)),
    "no-email": ("no email anywhere", frozenset(ATTRIBUTES) - {"email"}),
    "no-phone": ("no phone anywhere", frozenset(ATTRIBUTES) - {"phone"}),
    "no-national-id": ("no national id anywhere", frozenset(ATTRIBUTES) - {"nationalId"}),
    "febrl-like": ("name, birth date and address only (like the FEBRL benchmark data)",
                   frozenset({"givenName", "familyName", "dateOfBirth", *ADDRESS})),
}

# locale, country, share of people, trunk prefix of national phone numbers, country calling code
LOCALES = (("en_US", "US", 0.45, "", "1"), ("en_GB", "GB", 0.20, "0", "44"), ("de_DE", "DE", 0.12, "0", "49"),
           ("fr_FR", "FR", 0.09, "0", "33"), ("es_ES", "ES", 0.08, "", "34"), ("nl_NL", "NL", 0.06, "0", "31"))
COUNTRY_NAMES = {"US": ("USA", "United States", "US"), "GB": ("United Kingdom", "GB", "GBR"),
                 "DE": ("Germany", "DE", "DEU"), "FR": ("France", "FR", "FRA"), "ES": ("Spain", "ES", "ESP"),
                 "NL": ("Netherlands", "NL", "NLD")}


@dataclasses.dataclass(frozen=True)
class System:
    name: str
    date_order: str          # how registerSourceSystem is told to read its dates
    date_format: str         # ymd | dmy/ | dmy. | mdy/ | mdy2 (2-digit year)
    default_country: str
    trust: int
    coverage: float          # share of people the system holds
    typo: float              # chance of a typo per name or address field
    stale: float             # chance of holding the values from before a move
    keep: dict               # attribute -> chance the system holds it (absent: always)
    phone_style: str         # e164 | national | intl00 | digits
    upper: float             # chance of ALL CAPS names
    nicknames: float         # chance of the given name as a nickname
    maiden: float            # chance of keeping a maiden name after marriage


SYSTEMS = (
    System("crm", "YMD", "ymd", "US", 80, 0.80, 0.02, 0.10, {"nationalId": 0.25, "addressLine2": 0.6},
           "e164", 0.05, 0.05, 0.3),
    System("billing", "DMY", "dmy/", "GB", 90, 0.55, 0.01, 0.05, {"email": 0.7, "nationalId": 0.8},
           "national", 0.15, 0.0, 0.1),
    System("support", "MDY", "mdy/", "US", 40, 0.45, 0.06, 0.25,
           {"dateOfBirth": 0.4, "nationalId": 0.0, "addressLine1": 0.5, "addressLine2": 0.0, "postcode": 0.6,
            "region": 0.3, "locality": 0.5}, "digits", 0.1, 0.3, 0.8),
    System("marketing", "DMY", "dmy.", "DE", 20, 0.50, 0.05, 0.30,
           {"familyName": 0.8, "phone": 0.4, "nationalId": 0.0, "addressLine1": 0.3, "addressLine2": 0.0,
            "dateOfBirth": 0.5, "region": 0.2}, "intl00", 0.3, 0.2, 0.9),
    System("shop", "MDY", "mdy2", "US", 50, 0.40, 0.04, 0.15,
           {"nationalId": 0.0, "dateOfBirth": 0.3, "region": 0.7}, "national", 0.05, 0.3, 0.6),
)

HOUSEHOLD = 0.18        # a new person joins an earlier household (surname, address, landline)
TWIN = 0.03             # of those joining a household: a twin (same birth date too)
SHARED_EMAIL = 0.25     # of those joining a household: uses the family mailbox
MARRIED = 0.04          # women: the current surname is a married name; older systems keep the maiden one
MOVED = 0.20            # moved home at some point (old address, maybe old landline)
NEW_EMAIL = 0.12        # changed email address
SECOND_ACCOUNT = 0.03   # a second record in the same system
SWAP_NAMES = 0.01
INITIAL = 0.02
EMPTY = 0.01            # an empty string where the value is missing

NICKNAMES = {
    "william": ("Bill", "Will", "Billy"), "robert": ("Bob", "Rob", "Bobby"), "richard": ("Rick", "Dick", "Rich"),
    "james": ("Jim", "Jimmy"), "joseph": ("Joe",), "thomas": ("Tom", "Tommy"), "michael": ("Mike", "Mick"),
    "christopher": ("Chris",), "daniel": ("Dan", "Danny"), "matthew": ("Matt",), "anthony": ("Tony",),
    "charles": ("Charlie", "Chuck"), "david": ("Dave",), "steven": ("Steve",), "stephen": ("Steve",),
    "andrew": ("Andy", "Drew"), "edward": ("Ed", "Ted", "Eddie"), "benjamin": ("Ben",), "samuel": ("Sam",),
    "alexander": ("Alex", "Sasha"), "nicholas": ("Nick",), "jonathan": ("Jon",), "timothy": ("Tim",),
    "kenneth": ("Ken",), "gregory": ("Greg",), "patrick": ("Pat",), "peter": ("Pete",), "lawrence": ("Larry",),
    "elizabeth": ("Liz", "Beth", "Betty"), "jennifer": ("Jen", "Jenny"), "margaret": ("Maggie", "Peggy"),
    "katherine": ("Kate", "Kathy"), "catherine": ("Cathy", "Kate"), "patricia": ("Pat", "Trish"),
    "susan": ("Sue",), "rebecca": ("Becky",), "deborah": ("Debbie",), "victoria": ("Vicky", "Tori"),
    "jacqueline": ("Jackie",), "christine": ("Chris",), "kimberly": ("Kim",), "jessica": ("Jess",),
    "samantha": ("Sam",), "alexandra": ("Alex",), "amanda": ("Mandy",), "barbara": ("Barb",),
    "dorothy": ("Dot",), "pamela": ("Pam",), "cynthia": ("Cindy",), "abigail": ("Abby",),
    "johannes": ("Hans", "Jan"), "johann": ("Hans",), "wolfgang": ("Wolf",), "friedrich": ("Fritz",),
    "francisco": ("Paco",), "josé": ("Pepe",), "jose": ("Pepe",), "manuel": ("Manolo",), "dolores": ("Lola",),
    "alejandro": ("Alex",), "guillermo": ("Memo",), "hendrik": ("Henk",),
    "cornelis": ("Kees",), "frédéric": ("Fred",), "nicolas": ("Nico",),
}
DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
STREET_ABBREV = (("Street", "St"), ("Road", "Rd"), ("Avenue", "Ave"), ("Lane", "Ln"), ("Drive", "Dr"),
                 ("Court", "Ct"), ("straße", "str."), ("Straße", "Str."), ("weg", "wg."), ("avenue", "av."),
                 ("rue", "r."), ("Calle", "C/"), ("Plaza", "Pl."), ("straat", "str."))
KEYBOARD = {c: n for c, n in zip("qwertyuiopasdfghjklzxcvbnm",
                                 ("wa", "qes", "wrd", "etf", "ryg", "tuh", "yij", "uok", "ipl", "ol", "qsz", "awdx",
                                  "sefc", "drgv", "fthb", "gyjn", "hukm", "jilm", "kop", "asx", "zdc", "xfv", "cgb",
                                  "vhn", "bjm", "nk"))}


@dataclasses.dataclass
class Pool:
    """One locale's values and their cumulative weights for bisect sampling."""

    country: str
    trunk: str
    calling: str
    male: list[str]
    male_cum: list[float]
    female: list[str]
    female_cum: list[float]
    family: list[str]
    family_cum: list[float]
    streets: list[str]
    places: list[tuple[str, str, str | None]]   # locality, postcode, region
    domains: list[str]
    phone_prefixes: list[str]                   # national significant numbers without their last 4 digits
    nid: Callable[[random.Random], str]


def _zipf_weights(n: int, offset: float = 12.0) -> list[float]:
    return [1.0 / (k + offset) for k in range(n)]


def _cumulative(weights) -> list[float]:
    return list(itertools.accumulate(weights))


def _names(provider, attr: str, rng: random.Random) -> tuple[list[str], list[float]]:
    """A name list with realistic frequencies: Faker's own weights where it has them, else Zipf over a
    seeded shuffle (a few names common, most rare)."""
    values = getattr(provider, attr)
    if isinstance(values, dict):
        names = [str(k) for k in values]
        return names, _cumulative(float(w) for w in values.values())
    names = sorted({str(v) for v in values})
    rng.shuffle(names)
    return names, _cumulative(_zipf_weights(len(names)))


def _nid_maker(country: str) -> Callable[[random.Random], str]:
    letters = "ABCEGHJKLMNPRSTWXYZ"

    def us(r):
        return f"{r.randint(1, 665):03d}-{r.randint(1, 99):02d}-{r.randint(1, 9999):04d}"

    def gb(r):
        return f"{r.choice(letters)}{r.choice(letters)}{r.randint(0, 999999):06d}{r.choice('ABCD')}"

    def es(r):
        n = r.randint(10000000, 99999999)
        return f"{n}{'TRWAGMYFPDXBNJZSQVHLCKE'[n % 23]}"

    def digits(k):
        return lambda r: str(r.randint(10 ** (k - 1), 10 ** k - 1))

    return {"US": us, "GB": gb, "ES": es, "DE": digits(11), "FR": digits(13), "NL": digits(9)}[country]


def build_pools(seed: int) -> list[Pool]:
    """Value pools per locale, drawn once from Faker's locale data (deterministic for the seed)."""
    try:
        from faker import Faker
    except ImportError:                             # pragma: no cover - depends on the install
        raise RuntimeError("hub bench generate needs Faker: pip install -e '.[bench]'") from None
    import importlib

    import phonenumbers

    rng = random.Random(seed)
    pools = []
    for locale, country, _share, trunk, calling in LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        fake = Faker(locale)
        fake.seed_instance(seed)
        male, male_cum = _names(provider, "first_names_male", rng)
        female, female_cum = _names(provider, "first_names_female", rng)
        family, family_cum = _names(provider, "last_names", rng)
        region = getattr(fake, "state", None) or getattr(fake, "region", None)
        places = []
        for _ in range(600):
            places.append((fake.city(), fake.postcode(), region() if region else None))
        streets = sorted({fake.street_name() for _ in range(1500)})
        rng.shuffle(streets)
        domains = sorted({fake.free_email_domain() for _ in range(30)})
        prefixes = set()
        for _ in range(400):
            try:
                parsed = phonenumbers.parse(fake.phone_number(), country)
            except phonenumbers.NumberParseException:
                continue
            nsn = str(parsed.national_number)
            if parsed.country_code == int(calling) and phonenumbers.is_valid_number(parsed) and len(nsn) >= 8:
                prefixes.add(nsn[:-4])
        pools.append(Pool(country, trunk, calling, male, male_cum, female, female_cum, family, family_cum,
                          streets, places, domains, sorted(prefixes), _nid_maker(country)))
    return pools


def _choice(rng: random.Random, seq):
    """rng.choice without its per-call overhead (the generator calls it millions of times)."""
    return seq[int(rng.random() * len(seq))]


def _int(rng: random.Random, low: int, high: int) -> int:
    """An integer in [low, high], like rng.randint but several times faster."""
    return low + int(rng.random() * (high - low + 1))


def _pick(rng: random.Random, values: list[str], cum: list[float]) -> str:
    return values[bisect.bisect_left(cum, rng.random() * cum[-1])]


_ASCII_CACHE: dict[str, str] = {}


def _ascii(text: str) -> str:
    out = _ASCII_CACHE.get(text)
    if out is None:
        folded = unicodedata.normalize("NFKD", text.replace("ß", "ss")).encode("ascii", "ignore").decode()
        out = _ASCII_CACHE[text] = "".join(c for c in folded.lower() if c.isalnum())
    return out


def typo(rng: random.Random, s: str) -> str:
    """One keyboard slip: a neighbouring key, a dropped or doubled letter, or two letters transposed."""
    if len(s) < 3:
        return s
    i = rng.randrange(1, len(s))
    op = rng.random()
    c = s[i]
    if op < 0.35:
        near = KEYBOARD.get(c.lower())
        if near:
            n = rng.choice(near)
            return s[:i] + (n.upper() if c.isupper() else n) + s[i + 1:]
        return s
    if op < 0.6:
        return s[:i] + s[i + 1:]
    if op < 0.75:
        return s[:i] + c + s[i:]
    if i < len(s) - 1:
        return s[:i] + s[i + 1] + c + s[i + 2:]
    return s[:i - 1] + c + s[i - 1]


@dataclasses.dataclass
class Person:
    entity: int
    household: int
    pool: Pool
    female: bool
    given: str
    family: str
    maiden: str | None
    dob: tuple[int, int, int]
    email: str | None
    old_email: str | None
    phone: str                     # national significant number
    old_phone: str | None
    address: dict
    old_address: dict | None
    nid: str


class Generator:
    """Draws people and renders their records; one instance per generated data set."""

    def __init__(self, seed: int, profile: str = "full"):
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
        self.rng = random.Random(seed)
        self.profile = profile
        self.attributes = PROFILES[profile][1]
        self.pools = build_pools(seed)
        self.locale_cum = _cumulative(share for _l, _c, share, _t, _cc in LOCALES)
        self.handles: Counter = Counter()
        self.households: list[Person] = []
        self.features: Counter = Counter()
        self.keys: set[str] = set()

    # ---- people -------------------------------------------------------------------------------
    def _address(self, pool: Pool) -> dict:
        r = self.rng
        locality, postcode, region = _choice(r, pool.places)
        street = _choice(r, pool.streets)
        number = _int(r, 1, 240)
        line1 = f"{number} {street}" if pool.country in ("US", "GB", "FR") else f"{street} {number}"
        line2 = None
        if r.random() < 0.2:
            line2 = _choice(r, ("Apt ", "Flat ", "Unit ", "Suite ")) + str(_int(r, 1, 60))
        return {"addressLine1": line1, "addressLine2": line2, "locality": locality, "postcode": postcode,
                "region": region, "country": pool.country}

    def _phone(self, pool: Pool) -> str:
        return _choice(self.rng, pool.phone_prefixes) + f"{_int(self.rng, 0, 9999):04d}"

    def _email(self, pool: Pool, given: str, family: str, year: int) -> str:
        r = self.rng
        g, f = _ascii(given) or "x", _ascii(family) or "x"
        style = _int(r, 0, 5)
        handle = (f"{g}.{f}", f"{g[0]}{f}", f"{g}{_int(r, 1, 99)}", f"{f}.{g[0]}", f"{g}_{f}{year % 100:02d}",
                  f"{g}{f}")[style]
        domain = _choice(r, pool.domains)
        n = self.handles[(handle, domain)]
        self.handles[(handle, domain)] += 1
        return f"{handle}{n + 1 if n else ''}@{domain}"      # taken: the provider makes you add digits

    def person(self, entity: int) -> Person:
        r = self.rng
        head = None
        if self.households and r.random() < HOUSEHOLD:
            head = _choice(r, self.households)
        pool = head.pool if head else self.pools[bisect.bisect_left(self.locale_cum, r.random() * self.locale_cum[-1])]
        female = r.random() < 0.5
        names, cum = (pool.female, pool.female_cum) if female else (pool.male, pool.male_cum)
        given = _pick(r, names, cum)
        twin = head is not None and r.random() < TWIN
        if head is not None:
            while given == head.given:
                given = _pick(r, names, cum)
            family = head.family if r.random() < 0.9 or twin else _pick(r, pool.family, pool.family_cum)
            self.features["household_members"] += 1
        else:
            family = _pick(r, pool.family, pool.family_cum)
        if twin:
            dob = head.dob
            self.features["twins"] += 1
        else:
            month = _int(r, 1, 12)
            dob = (_int(r, 1936, 2006), month, _int(r, 1, DAYS[month - 1]))
        maiden = None
        if female and not twin and dob[0] < 2000 and r.random() < MARRIED:
            maiden = _pick(r, pool.family, pool.family_cum)
            if maiden != family:
                self.features["married_name_changes"] += 1
            else:
                maiden = None
        if head is not None:
            address = head.address
            phone = head.phone if r.random() < 0.7 else self._phone(pool)      # the household's landline
        else:
            address = self._address(pool)
            phone = self._phone(pool)
        if head is not None and head.email and r.random() < SHARED_EMAIL:
            email = head.email
            self.features["shared_family_emails"] += 1
        else:
            email = self._email(pool, given, family, dob[0])
        old_address = old_phone = old_email = None
        if r.random() < MOVED:
            old_address = self._address(pool)
            if r.random() < 0.5:
                old_phone = self._phone(pool)
            self.features["moves"] += 1
        if r.random() < NEW_EMAIL:
            old_email = email
            email = self._email(pool, given, family, dob[0])
            self.features["email_changes"] += 1
        p = Person(entity, head.household if head else entity, pool, female, given, family, maiden, dob, email,
                   old_email, phone, old_phone, address, old_address, pool.nid(r))
        if head is None and r.random() < 0.35:
            self.households.append(p)
        return p

    # ---- records ------------------------------------------------------------------------------
    def _date(self, system: System, y: int, m: int, d: int) -> str:
        f = system.date_format
        if f == "ymd":
            return f"{y:04d}-{m:02d}-{d:02d}"
        if f == "dmy/":
            return f"{d:02d}/{m:02d}/{y:04d}"
        if f == "dmy.":
            return f"{d:02d}.{m:02d}.{y:04d}"
        if f == "mdy/":
            return f"{m:02d}/{d:02d}/{y:04d}"
        return f"{m:02d}/{d:02d}/{y % 100:02d}"

    def _phone_text(self, system: System, pool: Pool, nsn: str) -> str:
        style = system.phone_style
        if style == "e164":
            return f"+{pool.calling} {nsn[:3]} {nsn[3:]}" if self.rng.random() < 0.5 else f"+{pool.calling}{nsn}"
        if style == "intl00":
            return f"00{pool.calling}{nsn}"
        national = pool.trunk + nsn
        if pool.country == "US":
            national = f"({nsn[:3]}) {nsn[3:6]}-{nsn[6:]}" if style == "national" else nsn
        elif style == "national":
            national = f"{national[:4]} {national[4:]}"
        if pool.country != system.default_country:           # a foreign number: written internationally
            return f"+{pool.calling} {nsn}"
        return national

    def record(self, p: Person, system: System, updated: dt.datetime) -> tuple[dict, str]:
        """The attributes `system` holds for `p`, and the record's updatedAt."""
        r = self.rng
        keep = system.keep
        stale = r.random() < system.stale
        address = p.old_address if stale and p.old_address else p.address
        phone = p.old_phone if stale and p.old_phone else p.phone
        email = p.old_email if stale and p.old_email else p.email
        family = p.maiden if p.maiden and r.random() < system.maiden else p.family
        if stale or family is p.maiden:
            updated -= dt.timedelta(days=_int(r, 400, 2500))      # stale values are old values
            self.features["stale_records"] += 1
        given = p.given
        if system.nicknames and r.random() < system.nicknames:
            nicks = NICKNAMES.get(given.lower())
            if nicks:
                given = _choice(r, nicks)
                self.features["nickname_records"] += 1
        a: dict[str, str | None] = {"givenName": given, "familyName": family}
        if r.random() < system.typo * 2:
            a["givenName"] = typo(r, given)
            self.features["typo_records"] += 1
        if r.random() < system.typo * 2:
            a["familyName"] = typo(r, family)
            self.features["typo_records"] += 1
        if r.random() < INITIAL:
            a["givenName"] = given[0] + "."
        if r.random() < SWAP_NAMES:
            a["givenName"], a["familyName"] = a["familyName"], a["givenName"]
            self.features["swapped_names"] += 1
        case = r.random()
        if case < system.upper:
            a["givenName"], a["familyName"] = a["givenName"].upper(), a["familyName"].upper()
        elif case < system.upper + 0.03:
            a["givenName"], a["familyName"] = a["givenName"].lower(), a["familyName"].lower()
        y, m, d = p.dob
        if r.random() < system.typo:
            if d <= 12 and d != m:
                m, d = d, m                                        # day and month swapped
            else:
                y += _choice(r, (-1, 1, -10, 10))
                d = min(d, 28)
            self.features["date_errors"] += 1
        a["dateOfBirth"] = self._date(system, y, m, d)
        if email:
            if r.random() < system.typo:
                user, _, domain = email.partition("@")
                email = f"{typo(r, user)}@{domain}"
            elif r.random() < 0.1:
                email = email.upper() if r.random() < 0.5 else " " + email.capitalize()
        a["email"] = email
        a["phone"] = self._phone_text(system, p.pool, phone)
        a.update(address)
        line1 = a["addressLine1"]
        if r.random() < system.typo * 2:
            line1 = typo(r, line1)
        if r.random() < 0.3:
            for long, short in STREET_ABBREV:
                if long in line1:
                    line1 = line1.replace(long, short)
                    break
        a["addressLine1"] = line1
        if r.random() < system.typo:
            a["locality"] = typo(r, a["locality"])
        if r.random() < 0.3:
            a["country"] = COUNTRY_NAMES[a["country"]][_int(r, 0, 2)]
        nid = p.nid
        if r.random() < 0.1:
            nid = nid.replace("-", " ")
        a["nationalId"] = nid
        out = {}
        allowed = self.attributes
        for name in ATTRIBUTES:
            value = a.get(name)
            if value is None or name not in allowed:
                continue
            chance = keep.get(name)
            if chance is not None and (chance == 0.0 or r.random() >= chance):
                continue
            out[name] = value
        if out and r.random() < EMPTY * len(out):           # one value arrives as an empty string
            out[_choice(r, list(out))] = ""
        return out, updated

    def key(self, system: System) -> str:
        while True:
            k = f"{system.name[:3].upper()}-{self.rng.getrandbits(44):011x}"
            if k not in self.keys:
                self.keys.add(k)
                return k


def write(out: str, people: int, *, seed: int = 7, profile: str = "full",
          progress: Callable[[int], None] | None = None) -> dict:
    """Generate `people` people into folder `out`; return the manifest (also written as manifest.json)."""
    if people < 1:
        raise ValueError("people must be at least 1")
    started = time.perf_counter()
    gen = Generator(seed, profile)
    pools_s = time.perf_counter() - started
    os.makedirs(out, exist_ok=True)
    files = {s.name: open(os.path.join(out, f"{s.name}.jsonl"), "w", encoding="utf-8") for s in SYSTEMS}
    counts: Counter = Counter()
    now = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    dumps = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode
    r = gen.rng
    try:
        with open(os.path.join(out, "truth.csv"), "w", newline="", encoding="utf-8") as tf:
            truth = csv.writer(tf)
            truth.writerow(["system", "key", "entity", "household"])
            for entity in range(people):
                p = gen.person(entity)
                chosen = [s for s in SYSTEMS if r.random() < s.coverage] or [SYSTEMS[0]]
                for system in chosen:
                    for _ in range(2 if r.random() < SECOND_ACCOUNT else 1):
                        updated = now - dt.timedelta(minutes=_int(r, 0, 60 * 24 * 900))
                        attrs, updated = gen.record(p, system, updated)
                        key = gen.key(system)
                        files[system.name].write(dumps({"key": key, "updatedAt": updated.isoformat(),
                                                        "attributes": attrs}) + "\n")
                        truth.writerow((system.name, key, entity, p.household))
                        counts[system.name] += 1
                if progress and entity % 10000 == 9999:
                    progress(10000)
    finally:
        for f in files.values():
            f.close()
    with open(os.path.join(out, "systems.json"), "w", encoding="utf-8") as f:
        json.dump([{"name": s.name, "dateOrder": s.date_order, "defaultCountry": s.default_country,
                    "trust": s.trust} for s in SYSTEMS], f, indent=1)
    manifest = {"generator": "hub.bench.generate", "people": people, "records": sum(counts.values()),
                "seed": seed, "profile": profile, "attributes": sorted(gen.attributes),
                "records_per_system": dict(counts), "features": dict(sorted(gen.features.items())),
                "seconds": round(time.perf_counter() - started, 2), "pool_seconds": round(pools_s, 2)}
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    return manifest


# ---- reading a data folder (the runner and the baseline share these) ------------------------------
def read_systems(data: str) -> list[dict]:
    with open(os.path.join(data, "systems.json"), encoding="utf-8") as f:
        return json.load(f)


def read_truth(data: str) -> dict[tuple[str, str], str]:
    """(system, key) -> entity."""
    with open(os.path.join(data, "truth.csv"), newline="", encoding="utf-8") as f:
        return {(row["system"], row["key"]): row["entity"] for row in csv.DictReader(f)}


def read_records(data: str, system: str) -> list[dict]:
    with open(os.path.join(data, f"{system}.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
