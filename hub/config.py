"""Settings: every knob the hub reads from the environment, in one place."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./hub.db"

# Deterministic ("exact") link rules: each is a set of attributes that must all be present and equal.
DEFAULT_EXACT_RULES: tuple[tuple[str, ...], ...] = (("national_id",), ("email", "date_of_birth"))


def _exact_rules(text: str | None) -> tuple[tuple[str, ...], ...]:
    """Parse `national_id;email+date_of_birth` into rule tuples."""
    if not text:
        return DEFAULT_EXACT_RULES
    return tuple(tuple(a.strip() for a in rule.split("+") if a.strip()) for rule in text.split(";") if rule.strip())


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    exact_rules: tuple[tuple[str, ...], ...] = DEFAULT_EXACT_RULES
    # survivorship rule per camelCase attribute, overriding hub.golden.survivorship.DEFAULT_RULES
    survivorship: dict[str, str] = field(default_factory=dict)
    link_threshold: float = 0.95
    review_threshold: float = 0.60
    max_batch: int = 5000
    # which match model real-time matching uses: latest (stored by `hub train`, else the shipped one),
    # default (the shipped one), a stored model id, or off (deterministic rules only)
    match_model: str = "latest"
    max_query_depth: int = 10
    max_query_tokens: int = 5000
    max_aliases: int = 30
    sql_echo: bool = False
    # change events (hub/events): how often a caught-up consumer looks for new changes, how long the
    # outbox keeps what every durable consumer has passed, and the broker publisher
    events_poll: float = 0.2
    events_retention_hours: float = 168.0
    publish: str = ""                      # "nats": `hub serve` also runs the publisher; "": only `hub publish`
    publish_role: str = "reader"           # whose view of the changes the broker receives
    publish_consumer: str = "nats"         # the durable consumer name its progress is stored under
    nats_url: str = "nats://127.0.0.1:4222"
    nats_stream: str = "HUB_CUSTOMER"
    nats_subject: str = "hub.customer"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Read the settings from the environment once per process."""
    env = os.environ
    return Settings(
        database_url=env.get("HUB_DATABASE_URL") or DEFAULT_DATABASE_URL,
        exact_rules=_exact_rules(env.get("HUB_EXACT_RULES")),
        survivorship=json.loads(env.get("HUB_SURVIVORSHIP") or "{}"),
        link_threshold=float(env.get("HUB_LINK_THRESHOLD", "0.95")),
        review_threshold=float(env.get("HUB_REVIEW_THRESHOLD", "0.60")),
        max_batch=int(env.get("HUB_MAX_BATCH", "5000")),
        match_model=env.get("HUB_MATCH_MODEL", "latest"),
        sql_echo=env.get("HUB_SQL_ECHO", "") == "1",
        events_poll=float(env.get("HUB_EVENTS_POLL_SECONDS", "0.2")),
        events_retention_hours=float(env.get("HUB_EVENTS_RETENTION_HOURS", "168")),
        publish=env.get("HUB_PUBLISH", "").strip().lower(),
        publish_role=env.get("HUB_PUBLISH_ROLE", "reader"),
        publish_consumer=env.get("HUB_PUBLISH_CONSUMER", "nats"),
        nats_url=env.get("HUB_NATS_URL", "nats://127.0.0.1:4222"),
        nats_stream=env.get("HUB_NATS_STREAM", "HUB_CUSTOMER"),
        nats_subject=env.get("HUB_NATS_SUBJECT", "hub.customer"),
    )
