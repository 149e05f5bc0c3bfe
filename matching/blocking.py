"""Indexed blocking keys for real-time candidate lookup (and the same keys for batch blocking).

Every key pairs a strong identifier or a name token with a second, independent attribute, so
no key is shared by more than a handful of records even at 1M people:

  e:<email>            p:<phone E.164>        i:<national id>
  d:<name>|<dob>       one key per name token (given-name nickname groups and family name), so
                       swapped given/family names, nicknames, a typo in one of the two names,
                       or a married name still share a key
  a:<name>|<postcode>  moved-house-proof it is not, but it survives a missing / wrong dob
  h:<name>|<line 1>    when the postcode is missing
  y:<given>|<family>|<year of birth>  both names, year only: survives day/month swaps + a move
  m:<email user>|<name>  new mailbox at another provider with the same user part
  q:<given[:2]><family[:2]>|<postcode>  typos in both names (Brittney Poole / Britney Pooue)
  w:<dob>|<postcode>   initials and missing names ("J." with no family name)
  s:<sorted letters of the user part>@<domain>  transposed / re-typed letters in an email

A name token is never a key on its own.
"""
from __future__ import annotations

from typing import Mapping

from .features import features


def _name_tokens(row: Mapping) -> set[str]:
    toks: set[str] = set(row["given_nick"] or ())
    if row["family"]:
        toks.add(row["family"])
    return {t for t in toks if len(t) > 1}


def keys_from_features(row: Mapping) -> set[str]:
    out: set[str] = set()
    if row["email"]:
        out.add("e:" + row["email"])
    if row["phone"]:
        out.add("p:" + row["phone"])
    if row["nid"]:
        out.add("i:" + row["nid"])
    toks = _name_tokens(row)
    dob, pc, addr = row["dob"], row["postcode"], row["addr"]
    for t in toks:
        if dob:
            out.add(f"d:{t}|{dob}")
        if pc:
            out.add(f"a:{t}|{pc}")
        if addr:
            out.add(f"h:{t}|{addr}")
        if row["email_user"]:
            out.add(f"m:{row['email_user']}|{t}")
    if row["given"] and row["family"] and pc:
        out.add(f"q:{row['given'][:2]}{row['family'][:2]}|{pc}")
    if dob and pc:
        out.add(f"w:{dob}|{pc}")
    if row["email"]:
        user, _, domain = row["email"].partition("@")
        out.add("s:" + "".join(sorted(user)) + "@" + domain)
    if dob and row["family"] and row["given_nick"]:
        fam = row["family"]
        for g in row["given_nick"]:
            pair = "|".join(sorted((g, fam)))
            out.add(f"y:{pair}|{dob[:4]}")
    return out


def blocking_keys(rec: Mapping[str, object]) -> set[str]:
    """Blocking keys of a standardised record (snake_case attributes)."""
    return keys_from_features(features(rec))
