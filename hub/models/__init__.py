"""Every table of the hub; importing this package registers them on SQLModel.metadata."""
from hub.models.customers import ACTIVE, MERGED, RETIRED, Customer, Lineage
from hub.models.events import Event, EventConsumer, Outbox, OutboxHead
from hub.models.matching import BlockingKey, MatchCandidate, MatchModelVersion
from hub.models.policy import AuthzRevision as AuthzRevision, AuthzRule as AuthzRule  # re-exported
from hub.models.records import SourceRecord
from hub.models.stewardship import MANUAL_MERGE, NOT_A_MATCH, SPLIT, StewardRule
from hub.models.systems import SourceSystem
from hub.models.tokens import ApiToken
from hub.models.types import utcnow

__all__ = ["ACTIVE", "MANUAL_MERGE", "MERGED", "NOT_A_MATCH", "RETIRED", "SPLIT", "ApiToken", "BlockingKey",
           "Customer", "Event", "EventConsumer", "Lineage", "MatchCandidate", "MatchModelVersion", "Outbox", "OutboxHead", "SourceRecord", "SourceSystem",
           "StewardRule", "utcnow"]
