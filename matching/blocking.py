"""Indexed blocking keys for real-time candidate lookup (and the same keys for batch blocking).

Every key pairs a strong identifier or a name with a second, independent attribute, so no key
is shared by more than a handful of records even at 1M people:

  e:<email>            p:<phone E.164>        i:<national id>
  d:<name>|<dob>       one key per name token (given-name nickname groups, family name and the
                       name-like words of the email user part), so swapped given/family names,
                       nicknames, a typo in one of the two names, a married name, or a name given
                       only inside the email address ("mitchell.s@...", "jparker@...") still share a key
  a:<name>|<postcode>  moved-house-proof it is not, but it survives a missing / wrong dob
  h:<name>|<line 1>    when the postcode is missing
  y:<given>|<family>|<year of birth>  both names, year only: survives day/month swaps + a move
  m:<email user>|<name>  new mailbox at another provider with the same user part
  q:<given[:2]><family[:2]>|<postcode>  typos in both names (Brittney Poole / Britney Pooue)
  w:<dob>|<postcode>   initials and missing names ("J." with no family name)
  s:<sorted letters of the user part>@<domain>  transposed / re-typed letters in an email
  n:<given sound>|<family sound>|<digits of the email user part>@<domain>  a typo in the letters
                       of the email user part ("lesley_myrsh88@" / "lesley_marsh88@"): same provider,
                       names that sound the same (Metaphone), same digits. The digits are kept on purpose: people
                       of the same name at the same provider often have addresses one character
                       apart ("roy37@" / "roy38@", "khorton@" / "chorton@"), and the match model
                       scores an email within one edit highly, so looser keys cost precision
  l:<given initial>|<family sound>|<locality>  moved within the town with a new email and phone,
                       an initial for the given name ("J. Parker" / "Jesse Parker"); the family
                       name as its Metaphone code (jellyfish), so a typo in it too

"Family" in n: and l: is the family name or a name-like word of the email user part, and a record
without a given name takes its given names from those words, so a record without a family name
still pairs with one that has it. A name is never a key on its own.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

import jellyfish

from .features import features
from .normalise import fold, nickname_groups

_WORD = re.compile(r"[a-z]{3,}")
# the hub stores keys in a VARCHAR(200) column: a longer key (a 250-character email) is cut, the same way
# for every record, so it still matches its equals
MAX_KEY_LENGTH = 200


@lru_cache(maxsize=100_000)
def _sound(token: str) -> str:
    """Metaphone code of a name token (spaces dropped: "van rossum" -> one code)."""
    return jellyfish.metaphone(token).replace(" ", "") or token


def _name_tokens(row: Mapping) -> set[str]:
    toks: set[str] = set(row["given_nick"] or ())
    if row["family"]:
        toks.add(row["family"])
    return {t for t in toks if len(t) > 1}


@lru_cache(maxsize=100_000)
def _email_words(user: str) -> tuple[str, ...]:
    return tuple(sorted(set(_WORD.findall(fold(user)))))


def _email_names(row: Mapping, names: set[str]) -> set[str]:
    """Words of the email user part (3+ letters) that may be a family name the record does not give.

    Words the record's names already give are left out (also "vanrossum" for "van rossum"), and so
    are words that are the given name or start with it ("joseramon" for "jose ramon"): those say
    nothing new. A word starting with the given name's initial ("jparker") also gives the rest.
    """
    if not row["email_user"]:
        return set()
    given = row["given"].split() if row["given"] else []
    nick = set(row["given_nick"] or ())
    known = names | {n.replace(" ", "") for n in names}
    out: set[str] = set()
    for w in _email_words(row["email_user"]):
        if w in known or any(w.startswith(g) for g in given if len(g) > 2) \
                or any(w.startswith(g) for g in nick if len(g) > 2) or nick.intersection(nickname_groups(w)):
            continue
        out.add(w)
        if len(w) > 4 and any(g[0] == w[0] for g in given) and w[1:] not in known:
            out.add(w[1:])
    return out


def keys_from_features(row: Mapping) -> set[str]:
    out: set[str] = set()
    email = row["email"]
    if email:
        out.add("e:" + email)
    if row["phone"]:
        out.add("p:" + row["phone"])
    if row["nid"]:
        out.add("i:" + row["nid"])
    names = _name_tokens(row)
    mailed = _email_names(row, names)
    dob, pc, addr = row["dob"], row["postcode"], row["addr"]
    for t in names | mailed:
        if dob:
            out.add(f"d:{t}|{dob}")
        if pc:
            out.add(f"a:{t}|{pc}")
        if addr:
            out.add(f"h:{t}|{addr}")
    if row["email_user"]:
        for t in names:
            out.add(f"m:{row['email_user']}|{t}")
    if row["given"] and row["family"] and pc:
        out.add(f"q:{row['given'][:2]}{row['family'][:2]}|{pc}")
    if dob and pc:
        out.add(f"w:{dob}|{pc}")
    domain = None
    if email:
        user, _, domain = email.partition("@")
        out.add("s:" + "".join(sorted(user)) + "@" + domain)
    if dob and row["family"] and row["given_nick"]:
        fam = row["family"]
        for g in row["given_nick"]:
            pair = "|".join(sorted((g, fam)))
            out.add(f"y:{pair}|{dob[:4]}")
    locality = row["locality"]
    if domain or locality:
        # given names: nickname groups, else (no given name) the email words; family: the family name
        # and the email words
        given = {g for g in row["given_nick"] or () if len(g) > 1} if row["given"] else \
            {g for w in mailed for g in nickname_groups(w)}
        family = mailed | ({row["family"]} if row["family"] and len(row["family"]) > 1 else set())
        if family:
            if domain:
                # the digits of the user part: "roy38@" and "roy37@" are two Roy Waltons, not a typo
                digits = "".join(ch for ch in user if ch.isdigit())
                sounds = {(_sound(g), _sound(f)) for g in given for f in family if g != f}
                for g, f in sounds:
                    out.add(f"n:{min(g, f)}|{max(g, f)}|{digits}@{domain}")
            if locality:
                fam_sounds = {_sound(f) for f in family}
                initials = {g[0] for g in given}
                if row["given"]:
                    initials.add(row["given"][0])
                for i in initials:
                    for fs in fam_sounds:
                        out.add(f"l:{i}|{fs}|{locality}")
    if any(len(k) > MAX_KEY_LENGTH for k in out):
        out = {k[:MAX_KEY_LENGTH] for k in out}
    return out


def blocking_keys(rec: Mapping[str, object]) -> set[str]:
    """Blocking keys of a standardised record (snake_case attributes)."""
    return keys_from_features(features(rec))
