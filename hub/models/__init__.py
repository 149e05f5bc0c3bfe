"""Every table of the hub; importing this package registers them on SQLModel.metadata."""
from hub.models.customers import ACTIVE, ERASED, MERGED, RETIRED, Customer, Lineage
from hub.models.events import Event, EventConsumer, Outbox, OutboxHead
from hub.models.matching import BlockingKey, MatchCandidate, MatchModelVersion
from hub.models.policy import AuthzRevision as AuthzRevision, AuthzRule as AuthzRule  # re-exported
from hub.models.consent import Consent, ConsentStatement, ReadAudit
from hub.models.erasure import Erasure, ErasureBlock, ErasureTask
from hub.models.records import SourceRecord
from hub.models.stewardship import MANUAL_MERGE, NOT_A_MATCH, SPLIT, StewardRule
from hub.models.systems import SourceSystem
from hub.models.tokens import ApiToken
from hub.models.types import utcnow

__all__ = ["ACTIVE", "ERASED", "MANUAL_MERGE", "MERGED", "NOT_A_MATCH", "RETIRED", "SPLIT", "ApiToken",
           "BlockingKey", "Consent", "ConsentStatement", "Customer", "Erasure", "ErasureBlock", "ErasureTask", "Event",
           "EventConsumer", "Lineage", "MatchCandidate", "MatchModelVersion", "Outbox", "OutboxHead", "ReadAudit",
           "SourceRecord", "SourceSystem",
           "StewardRule", "utcnow"]
