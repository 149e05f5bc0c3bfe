"""Place incoming records into golden records: deterministic rules, then the match model.

The planner works in memory on one batch. It is fed the stored records that
could match (found through indexed lookups by the caller) and then places the
batch's records one by one, so records of the same batch link to each other
too. Golden records are labelled by their id; golden records this batch will
create get negative provisional labels. When a record links to several golden
records they merge (union-find); the oldest stored id survives.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

CREATED, LINKED, UPDATED, QUEUED = "CREATED", "LINKED", "UPDATED", "QUEUED_FOR_REVIEW"


class Scorer(Protocol):
    """What the planner needs of a probabilistic match model."""

    def prepare(self, values: Mapping[str, Any]) -> tuple[Any, set[str], Any]: ...  # prepared, keys, features
    def from_features(self, features: Any) -> Any: ...  # prepared, from stored features
    def score_cluster(self, rec: Any, members: Sequence[Any]) -> Any: ...  # .probability, .explanation


@dataclass(frozen=True)
class Profile:
    """What linking needs of one record, computed once: its lookup keys and the model's features."""

    exact: tuple
    blocking: frozenset[str]
    prepared: Any
    features: Any = None  # what to store so the record is not normalised again

    @property
    def keys(self) -> tuple:
        return (*self.exact, *self.blocking)


def exact_keys(values: Mapping[str, Any], rules: Sequence[Sequence[str]]) -> list[tuple]:
    """Keys under which a record meets each deterministic rule (all its attributes present)."""
    keys = []
    for i, rule in enumerate(rules):
        parts = tuple(values.get(a) for a in rule)
        if all(p is not None and p != "" for p in parts):
            keys.append(("x", i, *parts))
    return keys


def rule_name(rule: Sequence[str]) -> str:
    """Name a deterministic rule for lineage and explanations, e.g. `exact:email+date_of_birth`."""
    return "exact:" + "+".join(rule)


@dataclass
class Known:
    label: int
    profile: Profile


@dataclass
class Placement:
    label: int
    action: str
    probability: float | None = None
    rule: str | None = None
    explanation: list | None = None
    review_label: int | None = None  # QUEUED_FOR_REVIEW: the golden record to review against


@dataclass
class Planner:
    exact_rules: Sequence[Sequence[str]]
    link_threshold: float = 0.95
    review_threshold: float = 0.60
    scorer: Scorer | None = None
    # steward memory: a record never links back to the golden record it was split from (record id ->
    # golden ids), and golden records a steward kept apart are never united (pairs of golden ids)
    forbidden: dict[int, set[int]] = field(default_factory=dict)
    apart: set[tuple[int, int]] = field(default_factory=set)
    known: dict[int, Known] = field(default_factory=dict)
    index: dict[Any, set[int]] = field(default_factory=dict)
    parent: dict[int, int] = field(default_factory=dict)
    _next_new: int = -1
    _next_batch_id: int = -1_000_000_000

    def profile(self, values: Mapping[str, Any]) -> Profile:
        """Compute a record's lookup keys and model features."""
        exact = tuple(exact_keys(values, self.exact_rules))
        if self.scorer is None:
            return Profile(exact, frozenset(), None)
        prepared, keys, features = self.scorer.prepare(values)
        return Profile(exact, frozenset(keys), prepared, features)

    def stored_profile(self, values: Mapping[str, Any], features: Any, keys: Iterable[str]) -> Profile:
        """Profile of a stored record found by these keys: only they can lead a batch record to it."""
        exact = tuple(exact_keys(values, self.exact_rules))
        if self.scorer is None:
            return Profile(exact, frozenset(), None)
        prepared = self.scorer.from_features(features) if features else self.scorer.prepare(values)[0]
        return Profile(exact, frozenset(keys), prepared)

    def add_known(self, record_id: int, label: int, profile: Profile) -> None:
        """Make a stored (or already placed) record available to link to."""
        self.known[record_id] = Known(label, profile)
        for k in profile.keys:
            self.index.setdefault(k, set()).add(record_id)

    def forget(self, record_id: int) -> None:
        """Drop a stored record (it is being replaced by its new version)."""
        known = self.known.pop(record_id, None)
        if known is not None:
            for k in known.profile.keys:
                self.index.get(k, set()).discard(record_id)

    def find(self, label: int) -> int:
        """Follow merges to the golden record a label now belongs to."""
        root = label
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while label != root:
            self.parent[label], label = root, self.parent.get(label, label)
        return root

    def _union(self, labels: Iterable[int]) -> int:
        roots = sorted({self.find(lbl) for lbl in labels})
        stored = [r for r in roots if r > 0]
        survivor = stored[0] if stored else roots[0]
        for r in roots:
            if r != survivor:
                self.parent[r] = survivor
        return survivor

    def _new_label(self) -> int:
        label, self._next_new = self._next_new, self._next_new - 1
        return label

    def _scores(self, profile: Profile, record_id: int | None) -> dict[int, tuple]:
        """Score every candidate golden record: (probability, rule, explanation) per label."""
        exact = set(profile.exact)
        by_label: dict[int, dict[int, Any]] = {}
        best: dict[int, tuple] = {}
        left = {self.find(c) for c in self.forbidden.get(record_id, ())}  # golden records it was split from
        for k in profile.keys:
            for rid in self.index.get(k, ()):
                if rid == record_id:
                    continue
                known = self.known[rid]
                label = self.find(known.label)
                if label in left:
                    continue
                if k in exact and label not in best:
                    best[label] = (1.0, rule_name(self.exact_rules[k[1]]), None)
                by_label.setdefault(label, {})[rid] = known.profile.prepared
        if self.scorer is not None:
            for label, members in by_label.items():
                if label not in best:
                    s = self.scorer.score_cluster(profile.prepared, list(members.values()))
                    best[label] = (s.probability, "match-model", s.explanation)
        return best

    def kept_apart(self, x: int, y: int) -> bool:
        """Tell whether a steward decided that these two golden records (or what they merged into) differ."""
        x, y = self.find(x), self.find(y)
        return any({self.find(a), self.find(b)} == {x, y} for a, b in self.apart)

    def _group(self, first: int, others: Sequence[int]) -> list[int]:
        """The golden records to unite with `first`, best first, skipping any a steward kept apart."""
        group = [self.find(first)]
        for lbl in others:
            root = self.find(lbl)
            if root not in group and not any(self.kept_apart(root, g) for g in group):
                group.append(root)
        return group

    def place(self, profile: Profile, *, record_id: int | None = None, current: int | None = None) -> Placement:
        """Decide where one record goes and remember it for the records after it."""
        scores = self._scores(profile, record_id)
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1][0], kv[0]))
        links = [lbl for lbl, s in ranked if s[0] >= self.link_threshold]
        if current is not None:
            group = self._group(current, links)
            label = self._union(group) if len(group) > 1 else group[0]
            placement = Placement(label, UPDATED)
        elif links:
            best_label, (p, rule, expl) = links[0], scores[links[0]]
            group = self._group(best_label, links[1:])
            label = self._union(group) if len(group) > 1 else group[0]
            placement = Placement(label, LINKED, p, rule, expl)
        elif ranked and ranked[0][1][0] >= self.review_threshold:
            best_label, (p, rule, expl) = ranked[0]
            placement = Placement(self._new_label(), QUEUED, p, rule, expl, review_label=self.find(best_label))
        else:
            placement = Placement(self._new_label(), CREATED)
        rid = record_id if record_id is not None else self._batch_id()
        self.forget(rid)
        self.add_known(rid, placement.label, profile)
        return placement

    def _batch_id(self) -> int:
        rid, self._next_batch_id = self._next_batch_id, self._next_batch_id - 1
        return rid
