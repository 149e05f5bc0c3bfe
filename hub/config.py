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
    # key material for personal data at rest (hub.privacy.keys): HUB_KEYS text, else the key file
    keys: str | None = field(default=None, repr=False)
    key_file: str = "./hub.keys"
    # days a source system has to acknowledge an erasure task before it is listed as overdue
    erasure_task_days: int = 30
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
        match_model=env.get("HUB_MATCH_MODEL", "latest"),
        sql_echo=env.get("HUB_SQL_ECHO", "") == "1",
        keys=env.get("HUB_KEYS") or None,
        key_file=env.get("HUB_KEY_FILE") or "./hub.keys",
        erasure_task_days=int(env.get("HUB_ERASURE_TASK_DAYS", "30")),
        db_pool_size=int(env.get("HUB_DB_POOL_SIZE", "10")),
        db_max_overflow=int(env.get("HUB_DB_MAX_OVERFLOW", "20")),
        statement_timeout_ms=int(env.get("HUB_STATEMENT_TIMEOUT_MS", "0")),
        sqlite_busy_timeout_ms=int(env.get("HUB_SQLITE_BUSY_TIMEOUT_MS", "30000")),
        metrics=env.get("HUB_METRICS", "on").strip().lower() not in ("off", "0", "false", "no"),
        shutdown_grace_s=int(env.get("HUB_SHUTDOWN_GRACE_S", "30")),
        spark_master=env.get("HUB_SPARK_MASTER") or "local[*]",
        spark_conf={str(k): str(v) for k, v in json.loads(env.get("HUB_SPARK_CONF") or "{}").items()},
    )
