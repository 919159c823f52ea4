"""The Kafka topic catalog: name, payload type, partitions, key (DESIGN §3)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import Message

from strata.v1 import events_pb2

PREFIX = "strata."


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its payload message type and how it is keyed and partitioned."""

    name: str
    message_type: type[Message]
    event_type: str
    partitions: int
    key: str = "item_id"
    # Payloads the topic carried before, still accepted: (message type, how it becomes
    # this topic's message). A consumer upgraded before its producers reads both.
    older: tuple[tuple[type[Message], Callable[[Message], Message]], ...] = ()

    @property
    def schema(self) -> str:
        """The `schema` header value: the payload's full protobuf name."""
        return str(self.message_type.DESCRIPTOR.full_name)

    def reader(
        self, schema: str
    ) -> tuple[type[Message], Callable[[Message], Message] | None] | None:
        """How to read a payload of `schema` on this topic: its type, and how it becomes
        this topic's message (None: it is one already). None: not a payload it carries."""
        if schema == self.schema:
            return self.message_type, None
        for message_type, upgrade in self.older:
            if schema == message_type.DESCRIPTOR.full_name:
                return message_type, upgrade
        return None


def _one_prediction(message: Message) -> Message:
    assert isinstance(message, events_pb2.PredictionMade)
    return events_pb2.PredictionsMade(routing=message.routing, predictions=[message.prediction])


def _one_item(message: Message) -> Message:
    assert isinstance(message, events_pb2.ItemImported)
    return events_pb2.ItemsImported(items=[message])


# An import's items, a few hundred to a message (keyed by the first one's id).
ITEMS_IMPORTED = TopicSpec(
    "strata.items.imported",
    events_pb2.ItemsImported,
    "items.imported",
    6,
    key="first item_id",
    older=((events_pb2.ItemImported, _one_item),),
)
# A scoring batch's predictions, many to a message, keyed by the items' bucket.
PREDICTIONS = TopicSpec(
    "strata.predictions",
    events_pb2.PredictionsMade,
    "predictions.made",
    6,
    key="bucket of item_id",
    older=((events_pb2.PredictionMade, _one_prediction),),
)
LABELS_SUBMITTED = TopicSpec(
    "strata.labels.submitted", events_pb2.LabelSubmitted, "label.submitted", 6
)
LABELS_CONSENSUS = TopicSpec(
    "strata.labels.consensus", events_pb2.ConsensusUpdated, "consensus.updated", 6
)
REVIEWS_REQUESTED = TopicSpec(
    "strata.reviews.requested", events_pb2.ReviewRequested, "review.requested", 3
)
ANNOTATORS_STATUS = TopicSpec(
    "strata.annotators.status",
    events_pb2.AnnotatorStatusChanged,
    "annotator.status_changed",
    3,
    key="annotator_id",
)
TRAINING_REQUESTED = TopicSpec(
    "strata.training.requested",
    events_pb2.TrainingRequested,
    "training.requested",
    1,
    key="project",
)
MODELS_PUBLISHED = TopicSpec(
    "strata.models.published", events_pb2.ModelPublished, "model.published", 1, key="project"
)
TRAINING_FEEDBACK = TopicSpec(
    "strata.training.feedback",
    events_pb2.TrainingFeedback,
    "training.feedback",
    1,
    key="project",
)
TRUST_CURVES = TopicSpec(
    "strata.quality.trust", events_pb2.TrustCurveFitted, "trust.fitted", 1, key="project"
)
CONTRACTS = TopicSpec(
    "strata.contracts", events_pb2.ContractLoaded, "contract.loaded", 1, key="project"
)
# Refusals and administrative actions of every service; the gateway keeps the audit table.
AUDIT = TopicSpec("strata.audit", events_pb2.AuditRecorded, "audit.recorded", 3, key="service")
DEADLETTER = TopicSpec(
    "strata.deadletter", events_pb2.DeadLetter, "deadletter", 1, key="original key"
)
PROBE = TopicSpec("strata.probe", events_pb2.Probe, "probe", 3, key="probe_id")

ALL_TOPICS: tuple[TopicSpec, ...] = (
    ITEMS_IMPORTED,
    PREDICTIONS,
    LABELS_SUBMITTED,
    LABELS_CONSENSUS,
    REVIEWS_REQUESTED,
    ANNOTATORS_STATUS,
    TRAINING_REQUESTED,
    MODELS_PUBLISHED,
    TRAINING_FEEDBACK,
    TRUST_CURVES,
    CONTRACTS,
    AUDIT,
    DEADLETTER,
    PROBE,
)

_BY_NAME = {t.name: t for t in ALL_TOPICS}


def topic(name: str) -> TopicSpec:
    """The spec of topic `name`; KeyError names the unknown topic."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown topic {name!r}; known: {sorted(_BY_NAME)}") from None
