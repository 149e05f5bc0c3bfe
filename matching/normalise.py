"""Comparison normalisation: ascii folding, name canonicalisation, address abbreviations.

Everything here is pure Python and deterministic; the same functions feed both the
real-time evaluator (`MatchModel.prepare`) and the batch Splink path (`cluster.py`,
`train.py`), so Splink and the evaluator always see identical feature values.
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_SPECIAL = str.maketrans({"ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "œ": "oe", "Œ": "OE",
                          "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "þ": "th", "ı": "i"})
_NON_ALNUM = re.compile(r"[^a-z0-9 ]+")
_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=200_000)
def fold(text: str) -> str:
    """Lower-case, ascii-fold (é -> e, ß -> ss), punctuation to space, collapse spaces."""
    text = unicodedata.normalize("NFKD", text.translate(_SPECIAL))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = _NON_ALNUM.sub(" ", text.replace("'", "").replace("’", ""))
    return _SPACES.sub(" ", text).strip()


def clean(value: object) -> str | None:
    """None for missing / blank values, else the stripped string."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def norm_name(value: object) -> str | None:
    text = clean(value)
    if text is None:
        return None
    out = fold(text)
    return out or None


# Nickname groups: every name in a group maps to the group's first (formal) name.
_NICK_GROUPS = [
    "william bill billy will willy liam", "robert bob bobby rob robbie bert", "richard dick rick ricky rich",
    "james jim jimmy jamie", "joseph joe joey", "thomas tom tommy", "michael mike mikey mick",
    "christopher chris kit", "christine chris chrissy", "christina chris tina", "daniel dan danny",
    "matthew matt", "anthony tony", "elizabeth liz lizzie beth betty eliza libby", "jennifer jen jenny",
    "margaret maggie meg peggy marge", "katherine kate kathy katie kat", "catherine cathy cate kate",
    "kathleen kathy kath", "patricia pat patty trish", "patrick pat paddy", "susan sue susie suzanne",
    "rebecca becky becca", "alexander alex alec sasha", "alexandra alex sandra lexi", "alejandro alex",
    "benjamin ben benny", "jonathan jon jonny", "john jack johnny", "samuel sam sammy",
    "samantha sam sammy", "nicholas nick nicky", "nicole nikki", "edward ed eddie ted ned",
    "stephen steve stevie", "steven steve stevie", "deborah debbie deb", "victoria vicky tori",
    "johannes hans", "francisco paco pancho", "jose pepe", "jacqueline jackie", "andrew andy drew",
    "anthony ant", "charles charlie chuck chas", "david dave davey", "donald don donnie",
    "douglas doug", "frederick fred freddie", "gerald gerry jerry", "gregory greg",
    "harold harry hal", "henry harry hank", "jeffrey jeff", "joshua josh", "kenneth ken kenny",
    "lawrence larry", "leonard leo len lenny", "louis lou", "nathan nate", "nathaniel nate nat",
    "peter pete", "philip phil", "phillip phil", "raymond ray", "ronald ron ronnie", "russell russ",
    "timothy tim timmy", "vincent vince vinnie", "walter walt wally", "zachary zach zack",
    "abigail abby", "alice allie", "amanda mandy", "barbara barb barbie", "caroline carrie",
    "cynthia cindy", "dorothy dot dottie", "eleanor ellie nora", "emily em emmy", "frances fran fanny",
    "gabrielle gabby", "helen nell", "jessica jess jessie", "judith judy", "kimberly kim",
    "lauren laurie", "madeline maddie", "melissa mel missy", "pamela pam", "sandra sandy",
    "stephanie steph", "theresa terry tess", "valerie val", "virginia ginny", "wolfgang wolf",
    "friedrich fritz", "guillermo memo", "ignacio nacho", "manuel manolo", "dolores lola",
    "concepcion concha", "mercedes merche", "jean jeannot", "hendrik henk", "cornelis kees",
    "jacobus koos", "gerardus gert", "willem wim", "johanna anja", "margarethe grete",
]


def _build_nicknames() -> dict[str, tuple[str, ...]]:
    groups: dict[str, list[str]] = {}
    for group in _NICK_GROUPS:
        names = group.split()
        for n in names:
            if names[0] not in groups.setdefault(n, []):
                groups[n].append(names[0])
    return {n: tuple(sorted(g)) for n, g in groups.items()}


# name -> the nickname groups (named by their formal name) it belongs to; "alex" is in several
NICKNAMES: dict[str, tuple[str, ...]] = _build_nicknames()


def nickname_groups(given: str | None) -> list[str] | None:
    """Nickname groups of the first token of a normalised given name (the token itself if unknown)."""
    if not given:
        return None
    first = given.split(" ", 1)[0]
    return list(NICKNAMES.get(first, (first,)))


_ADDR_TOKENS = {
    "street": "st", "str": "st", "strasse": "st", "road": "rd", "avenue": "av", "ave": "av",
    "lane": "ln", "drive": "dr", "rue": "r", "calle": "c", "boulevard": "bd", "blvd": "bd",
    "court": "ct", "place": "pl", "square": "sq", "apartment": "apt", "north": "n", "south": "s",
    "east": "e", "west": "w", "crescent": "cres", "terrace": "tce", "highway": "hwy", "parkway": "pkwy",
}
_STRASSE = re.compile(r"(?<=[a-z])(strasse|str)\b")


def norm_address(value: object) -> str | None:
    """Normalised address line: folded, street-type words abbreviated one way (Street/St -> st)."""
    text = clean(value)
    if text is None:
        return None
    text = _STRASSE.sub(" st", fold(text))
    out = " ".join(_ADDR_TOKENS.get(tok, tok) for tok in text.split())
    return out or None


def norm_postcode(value: object) -> str | None:
    text = clean(value)
    if text is None:
        return None
    out = "".join(ch for ch in text.upper() if ch.isalnum())
    return out or None


def norm_email(value: object) -> str | None:
    text = clean(value)
    if text is None:
        return None
    out = text.lower().replace(" ", "")
    return out if "@" in out and len(out) > 2 else None


def norm_phone(value: object) -> str | None:
    """E.164 expected; keep '+' and digits only (robust to a stray space or dash)."""
    text = clean(value)
    if text is None:
        return None
    digits = "".join(ch for ch in text if ch.isdigit())
    if len(digits) < 7:
        return None
    return "+" + digits


def norm_national_id(value: object) -> str | None:
    text = clean(value)
    if text is None:
        return None
    out = "".join(ch for ch in text.upper() if ch.isalnum())
    return out or None


_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")


def norm_dob(value: object) -> str | None:
    text = clean(value)
    if text is None:
        return None
    m = _DATE.match(text)
    return f"{m.group(1)}-{m.group(2)}-{m.group(3)}" if m else None
