"""Settings: every knob the hub reads from the environment, in one place."""
from __future__ import annotations

import json
import os
import re
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


# person attributes stored encrypted (hub.privacy.sealing): the ones the hub can seal, by default
DEFAULT_ENCRYPTED = frozenset({"national_id", "date_of_birth"})


def _encrypted(text: str | None) -> frozenset[str]:
    """Parse `national_id,date_of_birth` (or camelCase names; `none` for none) into snake_case names."""
    if text is None:
        return DEFAULT_ENCRYPTED
    names = [t.strip() for t in text.split(",") if t.strip() and t.strip().lower() != "none"]
    return frozenset(re.sub(r"(?<!^)([A-Z])", r"_\1", n).lower() for n in names)


DEFAULT_CONSENT_PURPOSES: tuple[str, ...] = ("marketing-email", "profiling")


def _purposes(text: str | None) -> tuple[str, ...]:
    """Parse `marketing-email,profiling` into purpose names."""
    if text is None or not text.strip():
        return DEFAULT_CONSENT_PURPOSES
    return tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    exact_rules: tuple[tuple[str, ...], ...] = DEFAULT_EXACT_RULES
    # survivorship rule per camelCase attribute, overriding hub.golden.survivorship.DEFAULT_RULES
    survivorship: dict[str, str] = field(default_factory=dict)
    link_threshold: float = 0.95
    review_threshold: float = 0.60
    max_batch: int = 5000
    # how far in the future a record's updatedAt may be (source clocks drift), in seconds; later is refused
    max_clock_skew: float = 300.0
    # `hub rematch --apply` refuses a plan splitting more than this share of golden records (--accept-splits)
    rematch_max_split_share: float = 0.01
    # which match model real-time matching uses: latest (the promoted one, else the shipped one),
    # default (the shipped one), a stored model id, or off (deterministic rules only)
    match_model: str = "latest"
    max_query_depth: int = 10
    max_query_tokens: int = 5000
    max_aliases: int = 30
    # a query's estimated cost (fields resolved, multiplied by page sizes and list lengths; schema/cost.py)
    max_query_cost: int = 100_000
    # bytes of a request body; larger bodies are refused while they are read (HTTP 413)
    max_body_bytes: int = 16 * 1024 * 1024
    # seconds a client is told to wait (Retry-After) when the database is unavailable (HTTP 503)
    retry_after: int = 5
    log_level: str = "INFO"
    log_format: str = "text"  # text (key=value) or json
    sql_echo: bool = False
    # key material for personal data at rest (hub.privacy.keys): HUB_KEYS text, else the key file
    keys: str | None = field(default=None, repr=False)
    key_file: str = "./hub.keys"
    # days a source system has to acknowledge an erasure task before it is listed as overdue
    erasure_task_days: int = 30
    # attributes sealed at rest (checked against hub.privacy.sealing.SEALABLE when the sealer is configured)
    encrypted_attributes: frozenset[str] = DEFAULT_ENCRYPTED
    # consent purposes a customer may grant or withdraw (hub.privacy.consent)
    consent_purposes: tuple[str, ...] = DEFAULT_CONSENT_PURPOSES
    # the audit of sensitive reads (hub.privacy.audit): on/off, flushed every N ms or M entries
    read_audit: bool = True
    audit_flush_ms: int = 200
    audit_batch: int = 1000
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
    # seconds the data-quality report (Query.dataQuality) is served from memory before it is computed again
    quality_cache_seconds: int = 60
    # operations (README "Operations"): connection pool per process, statement timeout of `hub serve`'s
    # connections (PostgreSQL; 0 = none), SQLite's wait for its write lock, /metrics on or off, seconds
    # a stopping server gives in-flight requests
    db_pool_size: int = 10
    db_max_overflow: int = 20
    statement_timeout_ms: int = 0
    sqlite_busy_timeout_ms: int = 30000
    metrics: bool = True
    shutdown_grace_s: int = 30
    # Splink on Spark (`hub rematch|train --engine spark`): the master URL and extra Spark settings (JSON)
    spark_master: str = "local[*]"
    spark_conf: dict[str, str] = field(default_factory=dict)


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
        max_clock_skew=float(env.get("HUB_MAX_CLOCK_SKEW", "300")),
        match_model=env.get("HUB_MATCH_MODEL", "latest"),
        max_query_cost=int(env.get("HUB_MAX_QUERY_COST", "100000")),
        max_body_bytes=int(env.get("HUB_MAX_BODY_BYTES", str(16 * 1024 * 1024))),
        retry_after=int(env.get("HUB_RETRY_AFTER", "5")),
        log_level=env.get("HUB_LOG_LEVEL", "INFO").upper(),
        log_format=env.get("HUB_LOG_FORMAT", "text").lower(),
        rematch_max_split_share=float(env.get("HUB_REMATCH_MAX_SPLIT_SHARE", "0.01")),
        sql_echo=env.get("HUB_SQL_ECHO", "") == "1",
        keys=env.get("HUB_KEYS") or None,
        key_file=env.get("HUB_KEY_FILE") or "./hub.keys",
        erasure_task_days=int(env.get("HUB_ERASURE_TASK_DAYS", "30")),
        encrypted_attributes=_encrypted(env.get("HUB_ENCRYPTED_ATTRIBUTES")),
        consent_purposes=_purposes(env.get("HUB_CONSENT_PURPOSES")),
        read_audit=env.get("HUB_READ_AUDIT", "on").lower() not in ("off", "0", "false", "no"),
        audit_flush_ms=int(env.get("HUB_AUDIT_FLUSH_MS", "200")),
        audit_batch=int(env.get("HUB_AUDIT_BATCH", "1000")),
        events_poll=float(env.get("HUB_EVENTS_POLL_SECONDS", "0.2")),
        events_retention_hours=float(env.get("HUB_EVENTS_RETENTION_HOURS", "168")),
        publish=env.get("HUB_PUBLISH", "").strip().lower(),
        publish_role=env.get("HUB_PUBLISH_ROLE", "reader"),
        publish_consumer=env.get("HUB_PUBLISH_CONSUMER", "nats"),
        nats_url=env.get("HUB_NATS_URL", "nats://127.0.0.1:4222"),
        nats_stream=env.get("HUB_NATS_STREAM", "HUB_CUSTOMER"),
        nats_subject=env.get("HUB_NATS_SUBJECT", "hub.customer"),
        quality_cache_seconds=int(env.get("HUB_QUALITY_CACHE_SECONDS", "60")),
        db_pool_size=int(env.get("HUB_DB_POOL_SIZE", "10")),
        db_max_overflow=int(env.get("HUB_DB_MAX_OVERFLOW", "20")),
        statement_timeout_ms=int(env.get("HUB_STATEMENT_TIMEOUT_MS", "0")),
        sqlite_busy_timeout_ms=int(env.get("HUB_SQLITE_BUSY_TIMEOUT_MS", "30000")),
        metrics=env.get("HUB_METRICS", "on").strip().lower() not in ("off", "0", "false", "no"),
        shutdown_grace_s=int(env.get("HUB_SHUTDOWN_GRACE_S", "30")),
        spark_master=env.get("HUB_SPARK_MASTER") or "local[*]",
        spark_conf={str(k): str(v) for k, v in json.loads(env.get("HUB_SPARK_CONF") or "{}").items()},
    )
