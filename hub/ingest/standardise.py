"""Validate and standardise raw customer attributes sent by source systems.

Pure functions only: no database, no I/O, no imports from the rest of the hub, so the
module can run inside bulk loaders and request handlers alike. Every bad value becomes
one `FieldError` for its field and is left out of the result; nothing is raised for data.

Casing rules for names (applied only to ALL-CAPS or all-lower input; mixed case such as
"McDonald", "DeVito" or "van den Berg" is kept exactly as the source sent it):

* every word, and every part after '-', "'" or '.', starts upper-case: "o'brien" -> "O'Brien",
  "mary-jane" -> "Mary-Jane", "j." -> "J.";
* "Mc" + letter becomes "Mc" + capital ("MCDONALD" -> "McDonald"). "Mac" is left alone
  ("MACDONALD" -> "Macdonald") because Mack, Macey, Machado and Macias are not Mac-names;
* name particles (van, der, den, de, la, del, della, di, da, du, le, von, ter, ten, bin, al, ...)
  are lower-case when they are not the first word; in family names they are lower-case as the
  first word too ("VAN DEN BERG" -> "van den Berg", "DA SILVA" -> "da Silva"), unless the whole
  name is made of particles ("LE" -> "Le");
* Roman numerals after the first word stay upper-case ("HENRY III" -> "Henry III").
Matching downstream compares case-folded values, so these rules affect display, not linking.
"""
from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
import pycountry
from email_validator import EmailNotValidError, validate_email

from hub.validation import ATTRIBUTE_LIMITS, STORED_CHARS, text_problem

ATTRIBUTES: tuple[str, ...] = (
    "given_name", "family_name", "date_of_birth", "email", "phone", "address_line1", "address_line2",
    "locality", "postcode", "region", "country", "national_id",
)


def _camel(name: str) -> str:
    """Turn a snake_case attribute name into its camelCase GraphQL input name."""
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


INPUT_NAMES: dict[str, str] = {name: _camel(name) for name in ATTRIBUTES}

_DATE_ORDERS = ("YMD", "DMY", "MDY")
_EARLIEST_BIRTH = dt.date(1900, 1, 1)


@dataclass(frozen=True)
class SystemProfile:
    """How one source system writes its data."""

    date_order: str = "YMD"             # "YMD" | "DMY" | "MDY": how the system writes ambiguous dates
    default_country: str | None = None  # ISO 3166-1 alpha-2, used to read national phone numbers

    def __post_init__(self) -> None:
        """Refuse a profile the standardiser could not apply (a configuration error, not data)."""
        if self.date_order not in _DATE_ORDERS:
            raise ValueError(f"date_order must be one of {', '.join(_DATE_ORDERS)}, not {self.date_order!r}")
        if self.default_country is not None:
            code = self.default_country.strip().upper()
            if pycountry.countries.get(alpha_2=code) is None:
                raise ValueError(
                    f"default_country must be an ISO 3166-1 alpha-2 code, not {self.default_country!r}")
            object.__setattr__(self, "default_country", code)


@dataclass(frozen=True)
class FieldError:
    """One refused value: the camelCase input field ("key" for the record key) and why."""

    field: str
    message: str
    code: str | None = None  # a machine-readable reason where there is one (ERASED)


@dataclass
class Standardised:
    """The standardised values of one record and the errors of the values that were refused."""

    values: dict[str, object]   # snake_case -> str, or datetime.date for date_of_birth
    errors: list[FieldError]
    # input names of the values refused before standardising (not text, too long, NUL, control characters,
    # lone surrogates): they are kept out of the stored raw payload too
    refused: frozenset[str] = frozenset()

    @property
    def identifiable(self) -> bool:
        """Say whether the record can identify a person.

        True when it has a national id, an email or a phone, or a family name together with a
        given name or a date of birth. Anything less (a bare surname, an address) cannot be
        told apart from the many other people who share it.
        """
        v = self.values
        if "national_id" in v or "email" in v or "phone" in v:
            return True
        return "family_name" in v and ("given_name" in v or "date_of_birth" in v)


class _Refused(ValueError):
    """Signal that a value is bad; `standardise` turns it into a FieldError."""


# ---------------------------------------------------------------------------------------- text

_LETTER = re.compile(r"[^\W\d_]")           # any Unicode letter
_ALNUM = re.compile(r"[^\W_]")              # any Unicode letter or digit


def _text(value: object) -> str | None:
    """Return the value as NFC text with whitespace collapsed, or None when it is absent."""
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    text = " ".join(value.split())
    if not text:
        return None
    # NFC so that "é" typed as e + combining accent compares equal and cases like one letter
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def _plain_text(text: str) -> str:
    """Accept free text (address lines, locality, region) that has at least one letter or digit.

    Case is kept: title-casing would break abbreviations such as "NSW", "PO BOX" or "4B".
    """
    if not _ALNUM.search(text):
        raise _Refused(f"must contain at least one letter or digit: {text!r}")
    return text


# --------------------------------------------------------------------------------------- names

# Not "das", "do" or "y": Das and Do are surnames in their own right, and Y is often an initial.
_PARTICLES = frozenset({
    "van", "der", "den", "de", "des", "la", "las", "los", "del", "della", "di", "da", "dos",
    "du", "le", "von", "zu", "ter", "ten", "bin", "binti", "al",
})
_ROMAN = frozenset({"ii", "iii", "iv"})     # not "vi": Vi is a given name
_MC = re.compile(r"\bMc([^\W\d_])")


def _mc_upper(match: re.Match[str]) -> str:
    """Capitalise the letter after a "Mc" prefix."""
    return "Mc" + match.group(1).upper()


def _cap_word(word: str) -> str:
    """Capitalise each part of a word split at '-', apostrophes and '.', and Mc-prefixes."""
    # str.title() starts a capital after every non-letter, which is exactly O'Brien, Mary-Jane, J.R.
    word = word.title()
    return _MC.sub(_mc_upper, word) if "Mc" in word else word


def _name(text: str, family: bool) -> str:
    """Standardise a given or family name; see the module docstring for the casing rules."""
    if not _LETTER.search(text):
        raise _Refused(f"must contain at least one letter: {text!r}")
    if not (text.isupper() or text.islower()):
        return text                      # mixed case: the source knew the right spelling
    words = text.lower().split(" ")
    only_particles = all(word in _PARTICLES for word in words)
    out = []
    for i, word in enumerate(words):
        if word in _PARTICLES and not only_particles and (i > 0 or family):
            out.append(word)
        elif i > 0 and word in _ROMAN:
            out.append(word.upper())
        else:
            out.append(_cap_word(word))
    return " ".join(out)


def _given_name(text: str, profile: SystemProfile, today: dt.date, values: dict[str, object]) -> str:
    """Standardise a given name."""
    return _name(text, family=False)


def _family_name(text: str, profile: SystemProfile, today: dt.date, values: dict[str, object]) -> str:
    """Standardise a family name."""
    return _name(text, family=True)


# --------------------------------------------------------------------------------------- email

# RFC 5322 dot-atom over ASCII atext: the same rule email-validator applies to plain local parts.
_ASCII_LOCAL_PART = re.compile(r"[a-z0-9_!#$%&'*+\-/=?^`{|}~]+(?:\.[a-z0-9_!#$%&'*+\-/=?^`{|}~]+)*")
_EMAIL_MAX_LENGTH = 254


@lru_cache(maxsize=16384)
def _email_domain(domain: str) -> tuple[str, str] | None:
    """Return a mail domain as email-validator normalises it, and its ASCII form; None if bad."""
    try:
        checked = validate_email("x@" + domain, check_deliverability=False)
    except EmailNotValidError:
        return None
    return checked.domain, checked.ascii_domain


def _email(text: str, profile: SystemProfile, today: dt.date, values: dict[str, object]) -> str:
    """Lower-case an email address and check its syntax (no DNS: bulk loads must not wait on it).

    email-validator spends most of its time on the domain (IDNA / UTS-46 checks), and domains
    repeat endlessly (gmail.com), so a plain ASCII address is checked as: local part by the
    dot-atom rule email-validator itself uses, domain by email-validator once per domain (cached).
    Everything else, and every failure (for its exact message), goes through the full validator.
    """
    address = text.lower()
    local, at, domain = address.rpartition("@")
    if at and address.isascii() and _ASCII_LOCAL_PART.fullmatch(local):
        checked_domain = _email_domain(domain)
        if checked_domain is not None and len(local) + 1 + len(checked_domain[1]) <= _EMAIL_MAX_LENGTH:
            return f"{local}@{checked_domain[0]}"
    try:
        checked = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise _Refused(f"not a valid email address: {text!r} ({exc})") from None
    return checked.normalized


# --------------------------------------------------------------------------------------- phone

def _phone(text: str, profile: SystemProfile, today: dt.date, values: dict[str, object]) -> str:
    """Write a phone number in E.164, dropping any extension.

    National numbers are read in the record's own country, else the system's default country.
    The check is `is_possible_number` (plausible length for the country), not `is_valid_number`:
    validity depends on number-range metadata that lags real allocations and rejects the
    fictitious-but-well-formed numbers used in test data, and a refused phone is lost for matching.
    """
    number = text.lstrip("(")
    if number.startswith("00"):
        # 00 is the international prefix in most of the world; read it like '+' whatever the region
        number = "+" + number[2:].lstrip()
    region = None
    if not number.startswith("+"):
        region = values.get("country") or profile.default_country
        if region is None:
            raise _Refused(f"needs a country (on the record or as the system default) to read "
                           f"national number {text!r}")
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        raise _Refused(f"not a phone number: {text!r}") from None
    if not phonenumbers.is_possible_number(parsed):
        where = f" in {region}" if region else ""
        raise _Refused(f"not a possible phone number{where}: {text!r}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


# ---------------------------------------------------------------------------------------- date

_ISO_DATE = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?: ?Z|[+-]\d{2}(?::?\d{2})?)?)?",
    re.ASCII)
_COMPACT_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})", re.ASCII)
_PARTS_DATE = re.compile(r"([^\W_]+)[/\-., ]+([^\W_]+)[/\-., ]+([^\W_]+)\.?")
_ORDINAL_SUFFIXES = ("st", "nd", "rd", "th")
# (year, month, day) token positions for each date order
_POSITIONS = {"YMD": (0, 1, 2), "DMY": (2, 1, 0), "MDY": (2, 0, 1)}


def _month_table() -> dict[str, int]:
    """Map month names and abbreviations (English, German, French, Spanish, Dutch) to numbers."""
    names = (
        "january february march april may june july august september october november december",
        "jan feb mar apr may jun jul aug sep oct nov dec",
        "januar februar märz april mai juni juli august september oktober november dezember",
        "jän feb mrz apr mai jun jul aug sept okt nov dez",
        "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
        "janv févr mars avr mai juin juil août sept oct nov déc",
        "janvier fevrier mars avril mai juin juillet aout septembre octobre novembre decembre",
        "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre",
        "ene feb mar abr may jun jul ago sept oct nov dic",
        "januari februari maart april mei juni juli augustus september oktober november december",
        "jan feb mrt apr mei jun jul aug sep okt nov dec",
        "jan feb mär apr may jun jul aug sept oct nov dec",
    )
    return {name: number for line in names for number, name in enumerate(line.split(), start=1)}


_MONTHS = _month_table()


def _year(token: str, month: int, day: int, today: dt.date) -> int:
    """Read a 4- or 2-digit year; a 2-digit year is put in the latest century not in the future."""
    if len(token) == 4:
        return int(token)
    if len(token) != 2:
        raise ValueError(token)
    year = 2000 + int(token)
    return year - 100 if (year, month, day) > (today.year, today.month, today.day) else year


def _number(token: str) -> int:
    """Read a 1- or 2-digit day or month."""
    if not (token.isdecimal() and len(token) <= 2):
        raise ValueError(token)
    return int(token)


def _strip_ordinal(token: str) -> str:
    """Turn "3rd" into "3"; leave other tokens as they are."""
    if token[-2:].lower() in _ORDINAL_SUFFIXES and token[:-2].isdecimal():
        return token[:-2]
    return token


def _parts_date(parts: tuple[str, ...], order: str, today: dt.date) -> dt.date:
    """Build a date from three tokens: numbers in the given order, or with one month name."""
    parts = tuple(_strip_ordinal(p) for p in parts)
    words = [i for i, p in enumerate(parts) if not p.isdecimal()]
    if words:
        if len(words) != 1:
            raise ValueError(parts)
        month = _MONTHS[parts[words[0]].lower()]
        first, second = (p for i, p in enumerate(parts) if i != words[0])
        # "1987 Apr 3" leads with the year; "3 Apr 1987" and "Apr 3, 1987" put the day first
        year_token, day_token = (first, second) if len(first) == 4 else (second, first)
        day = _number(day_token)
        return dt.date(_year(year_token, month, day, today), month, day)
    y, m, d = (0, 1, 2) if len(parts[0]) == 4 else _POSITIONS[order]
    month, day = _number(parts[m]), _number(parts[d])
    return dt.date(_year(parts[y], month, day, today), month, day)


def _date_of_birth(text: str, profile: SystemProfile, today: dt.date, values: dict[str, object]) -> dt.date:
    """Read a birth date written in the system's date order, ISO 8601 or YYYYMMDD."""
    order = profile.date_order
    try:
        if match := _ISO_DATE.fullmatch(text) or _COMPACT_DATE.fullmatch(text):
            born = dt.date(int(match[1]), int(match[2]), int(match[3]))
        elif match := _PARTS_DATE.fullmatch(text):
            born = _parts_date(match.groups(), order, today)
        else:
            raise ValueError(text)
    except (ValueError, KeyError, OverflowError):
        raise _Refused(f"not a valid date for date order {order}: {text!r}") from None
    if born > today:
        raise _Refused(f"date of birth is in the future: {text!r} read as {born.isoformat()}")
    if born < _EARLIEST_BIRTH:
        raise _Refused(f"date of birth is before {_EARLIEST_BIRTH.isoformat()}: {text!r}")
    return born


# ------------------------------------------------------------------------------------- country

# Common names and codes that pycountry's exact lookup does not know; keys are _fold()ed.
_COUNTRY_ALIASES = {
    "uk": "GB", "england": "GB", "scotland": "GB", "wales": "GB", "northern ireland": "GB",
    "great britain": "GB", "britain": "GB", "united kingdom of great britain": "GB",
    "america": "US", "united states of america": "US", "united states": "US", "us of a": "US",
    "deutschland": "DE", "bundesrepublik deutschland": "DE", "brd": "DE",
    "holland": "NL", "the netherlands": "NL", "nederland": "NL",
    "espana": "ES", "france metropolitaine": "FR", "italia": "IT", "osterreich": "AT",
    "schweiz": "CH", "suisse": "CH", "svizzera": "CH", "belgique": "BE", "belgie": "BE",
    "brasil": "BR", "mexico": "MX", "sverige": "SE", "norge": "NO", "danmark": "DK", "suomi": "FI",
    "polska": "PL", "eire": "IE", "republic of ireland": "IE",
    "russia": "RU", "turkey": "TR", "ivory coast": "CI", "cote divoire": "CI", "macedonia": "MK",
    "swaziland": "SZ", "burma": "MM", "cape verde": "CV", "east timor": "TL", "vatican": "VA",
    "vatican city": "VA", "palestine": "PS", "brunei": "BN", "micronesia": "FM",
    "south korea": "KR", "north korea": "KP", "czech republic": "CZ", "uae": "AE",
    "democratic republic of the congo": "CD", "dr congo": "CD", "drc": "CD",
}


def _fold(text: str) -> str:
    """Reduce a country name to lower-case ASCII words without dots or apostrophes."""
    decomposed = unicodedata.normalize("NFKD", text)
    ascii_only = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(ascii_only.casefold().replace(".", "").replace("'", "").replace("\u2019", "").split())


@lru_cache(maxsize=4096)
def _country_code(text: str) -> str | None:
    """Find the ISO 3166-1 alpha-2 code for a country code or name, or None."""
    # No pycountry.search_fuzzy: it also matches subdivisions and substrings ("UK" -> GB, UG, UA;
    # "America" -> American Samoa), and a confidently wrong country is worse than an error.
    folded = _fold(text)
    if folded in _COUNTRY_ALIASES:
        return _COUNTRY_ALIASES[folded]
    for candidate in (text, folded):
        try:
            return pycountry.countries.lookup(candidate).alpha_2
        except LookupError:
            continue
    return None


def _country(text: str, profile: SystemProfile, today: dt.date, values: dict[str, object]) -> str:
    """Turn a country code or name into its ISO 3166-1 alpha-2 code."""
    code = _country_code(text)
    if code is None:
        raise _Refused(f"not a known country name or ISO 3166-1 code: {text!r}")
    return code


# ------------------------------------------------------------------------------ postcode and id

_NATIONAL_ID = re.compile(r"(?:[^\W_]|-)+")
_ID_DROPPED = str.maketrans("", "", " .")


def _postcode(text: str, profile: SystemProfile, today: dt.date, values: dict[str, object]) -> str:
    """Upper-case a postcode (whitespace is already collapsed)."""
    return _plain_text(text).upper()


def _national_id(text: str, profile: SystemProfile, today: dt.date, values: dict[str, object]) -> str:
    """Upper-case a national id and drop spaces and dots; only letters, digits and '-' may remain."""
    compact = text.upper().translate(_ID_DROPPED)
    if not _NATIONAL_ID.fullmatch(compact):
        raise _Refused(f"may contain only letters, digits, '-', spaces and dots: {text!r}")
    if len(compact) - compact.count("-") < 4:
        raise _Refused(f"must contain at least 4 letters or digits: {text!r}")
    return compact


def _free_text(text: str, profile: SystemProfile, today: dt.date, values: dict[str, object]) -> str:
    """Keep an address line, locality or region with its whitespace collapsed."""
    return _plain_text(text)


# ------------------------------------------------------------------------------------- records

_Rule = Callable[[str, SystemProfile, dt.date, dict[str, object]], object]

# Country comes before phone: a national phone number is read in the record's own country.
_RULES: tuple[tuple[str, str, _Rule], ...] = tuple(
    (name, INPUT_NAMES[name], rule) for name, rule in (
        ("given_name", _given_name), ("family_name", _family_name), ("date_of_birth", _date_of_birth),
        ("email", _email), ("country", _country), ("phone", _phone),
        ("address_line1", _free_text), ("address_line2", _free_text), ("locality", _free_text),
        ("postcode", _postcode), ("region", _free_text), ("national_id", _national_id),
    )
)


def standardise(raw: Mapping[str, object | None], profile: SystemProfile, *,
                today: dt.date | None = None) -> Standardised:
    """Validate and standardise one record's raw camelCase attributes.

    Absent values (missing, None, empty or whitespace-only) are skipped silently; unknown keys
    are ignored; each bad value yields one FieldError and is left out of `values`. A value that is
    not text (numbers and dates are read as their text), longer than its limit or holding characters text may not hold (hub.validation) is
    refused before any rule reads it, and named in `refused`. `today` bounds birth dates and the
    2-digit-year pivot (defaults to the local date).
    """
    today = today or dt.date.today()
    values: dict[str, object] = {}
    errors: list[FieldError] = []
    refused: set[str] = set()
    for name, input_name, rule in _RULES:
        value = raw.get(input_name)
        if value is None:
            continue
        if isinstance(value, int | float | dt.date) and not isinstance(value, bool):
            value = str(value)  # Python callers may pass numbers and dates; JSON and GraphQL send text
        why = text_problem(value, ATTRIBUTE_LIMITS[input_name])
        if why is not None:
            errors.append(FieldError(input_name, why))
            refused.add(input_name)
            continue
        text = _text(value)
        if text is None:
            continue
        try:
            std = rule(text, profile, today, values)
        except _Refused as refused_value:
            errors.append(FieldError(input_name, str(refused_value)))
            continue
        stored = STORED_CHARS.get(input_name)
        if stored is not None and len(std) > stored:  # casing or NFC can lengthen a value (ß -> Ss)
            errors.append(FieldError(input_name, f"is longer than {stored} characters once standardised"))
            continue
        values[name] = std
    return Standardised(values, errors, frozenset(refused))
