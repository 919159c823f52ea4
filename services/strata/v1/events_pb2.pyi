import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from strata.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReviewKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVIEW_KIND_UNSPECIFIED: _ClassVar[ReviewKind]
    REVIEW_KIND_EXPERT: _ClassVar[ReviewKind]
    REVIEW_KIND_RELABEL: _ClassVar[ReviewKind]
REVIEW_KIND_UNSPECIFIED: ReviewKind
REVIEW_KIND_EXPERT: ReviewKind
REVIEW_KIND_RELABEL: ReviewKind

class ItemImported(_message.Message):
    __slots__ = ("routing", "item", "gold_answer")
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    GOLD_ANSWER_FIELD_NUMBER: _ClassVar[int]
    routing: _common_pb2.RoutingMetadata
    item: _common_pb2.Item
    gold_answer: str
    def __init__(self, routing: _Optional[_Union[_common_pb2.RoutingMetadata, _Mapping]] = ..., item: _Optional[_Union[_common_pb2.Item, _Mapping]] = ..., gold_answer: _Optional[str] = ...) -> None: ...

class ItemsImported(_message.Message):
    __slots__ = ("items", "routing")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ItemImported]
    routing: _common_pb2.RoutingMetadata
    def __init__(self, items: _Optional[_Iterable[_Union[ItemImported, _Mapping]]] = ..., routing: _Optional[_Union[_common_pb2.RoutingMetadata, _Mapping]] = ...) -> None: ...

class PredictionMade(_message.Message):
    __slots__ = ("routing", "prediction")
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    routing: _common_pb2.RoutingMetadata
    prediction: _common_pb2.Prediction
    def __init__(self, routing: _Optional[_Union[_common_pb2.RoutingMetadata, _Mapping]] = ..., prediction: _Optional[_Union[_common_pb2.Prediction, _Mapping]] = ...) -> None: ...

class PredictionsMade(_message.Message):
    __slots__ = ("routing", "predictions")
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    routing: _common_pb2.RoutingMetadata
    predictions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Prediction]
    def __init__(self, routing: _Optional[_Union[_common_pb2.RoutingMetadata, _Mapping]] = ..., predictions: _Optional[_Iterable[_Union[_common_pb2.Prediction, _Mapping]]] = ...) -> None: ...

class LabelSubmitted(_message.Message):
    __slots__ = ("routing", "label", "gold", "gold_answer", "prelabel_honeypot", "revision")
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    GOLD_FIELD_NUMBER: _ClassVar[int]
    GOLD_ANSWER_FIELD_NUMBER: _ClassVar[int]
    PRELABEL_HONEYPOT_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    routing: _common_pb2.RoutingMetadata
    label: _common_pb2.Label
    gold: bool
    gold_answer: str
    prelabel_honeypot: bool
    revision: int
    def __init__(self, routing: _Optional[_Union[_common_pb2.RoutingMetadata, _Mapping]] = ..., label: _Optional[_Union[_common_pb2.Label, _Mapping]] = ..., gold: _Optional[bool] = ..., gold_answer: _Optional[str] = ..., prelabel_honeypot: _Optional[bool] = ..., revision: _Optional[int] = ...) -> None: ...

class ConsensusUpdated(_message.Message):
    __slots__ = ("routing", "consensus", "requested_overlap")
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    CONSENSUS_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_OVERLAP_FIELD_NUMBER: _ClassVar[int]
    routing: _common_pb2.RoutingMetadata
    consensus: _common_pb2.ConsensusLabel
    requested_overlap: int
    def __init__(self, routing: _Optional[_Union[_common_pb2.RoutingMetadata, _Mapping]] = ..., consensus: _Optional[_Union[_common_pb2.ConsensusLabel, _Mapping]] = ..., requested_overlap: _Optional[int] = ...) -> None: ...

class ReviewRequested(_message.Message):
    __slots__ = ("routing", "item_id", "project", "kind", "detail", "current", "suspected_label_ids")
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    SUSPECTED_LABEL_IDS_FIELD_NUMBER: _ClassVar[int]
    routing: _common_pb2.RoutingMetadata
    item_id: str
    project: str
    kind: ReviewKind
    detail: str
    current: _common_pb2.ConsensusLabel
    suspected_label_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, routing: _Optional[_Union[_common_pb2.RoutingMetadata, _Mapping]] = ..., item_id: _Optional[str] = ..., project: _Optional[str] = ..., kind: _Optional[_Union[ReviewKind, str]] = ..., detail: _Optional[str] = ..., current: _Optional[_Union[_common_pb2.ConsensusLabel, _Mapping]] = ..., suspected_label_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AnnotatorStatusChanged(_message.Message):
    __slots__ = ("routing", "annotator_id", "project", "status", "gold_accuracy", "gold_accuracy_lower_bound", "gold_answered", "reason")
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    GOLD_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    GOLD_ACCURACY_LOWER_BOUND_FIELD_NUMBER: _ClassVar[int]
    GOLD_ANSWERED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    routing: _common_pb2.RoutingMetadata
    annotator_id: str
    project: str
    status: _common_pb2.AnnotatorStatus
    gold_accuracy: float
    gold_accuracy_lower_bound: float
    gold_answered: int
    reason: str
    def __init__(self, routing: _Optional[_Union[_common_pb2.RoutingMetadata, _Mapping]] = ..., annotator_id: _Optional[str] = ..., project: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.AnnotatorStatus, str]] = ..., gold_accuracy: _Optional[float] = ..., gold_accuracy_lower_bound: _Optional[float] = ..., gold_answered: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class TrainingRequested(_message.Message):
    __slots__ = ("routing", "project", "consensus_labels", "trigger")
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    CONSENSUS_LABELS_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    routing: _common_pb2.RoutingMetadata
    project: str
    consensus_labels: int
    trigger: str
    def __init__(self, routing: _Optional[_Union[_common_pb2.RoutingMetadata, _Mapping]] = ..., project: _Optional[str] = ..., consensus_labels: _Optional[int] = ..., trigger: _Optional[str] = ...) -> None: ...

class GoldLogits(_message.Message):
    __slots__ = ("item_id", "logits", "gold_answer")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    LOGITS_FIELD_NUMBER: _ClassVar[int]
    GOLD_ANSWER_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    logits: _containers.RepeatedScalarFieldContainer[float]
    gold_answer: str
    def __init__(self, item_id: _Optional[str] = ..., logits: _Optional[_Iterable[float]] = ..., gold_answer: _Optional[str] = ...) -> None: ...

class ModelPublished(_message.Message):
    __slots__ = ("routing", "project", "model_version", "artifact_uri", "family", "metrics", "classes", "run_id", "published_at", "calibration_inputs", "trust_curve")
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_URI_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_INPUTS_FIELD_NUMBER: _ClassVar[int]
    TRUST_CURVE_FIELD_NUMBER: _ClassVar[int]
    routing: _common_pb2.RoutingMetadata
    project: str
    model_version: str
    artifact_uri: str
    family: str
    metrics: _common_pb2.ModelMetrics
    classes: _containers.RepeatedScalarFieldContainer[str]
    run_id: str
    published_at: _timestamp_pb2.Timestamp
    calibration_inputs: _containers.RepeatedCompositeFieldContainer[GoldLogits]
    trust_curve: _common_pb2.TrustCurve
    def __init__(self, routing: _Optional[_Union[_common_pb2.RoutingMetadata, _Mapping]] = ..., project: _Optional[str] = ..., model_version: _Optional[str] = ..., artifact_uri: _Optional[str] = ..., family: _Optional[str] = ..., metrics: _Optional[_Union[_common_pb2.ModelMetrics, _Mapping]] = ..., classes: _Optional[_Iterable[str]] = ..., run_id: _Optional[str] = ..., published_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., calibration_inputs: _Optional[_Iterable[_Union[GoldLogits, _Mapping]]] = ..., trust_curve: _Optional[_Union[_common_pb2.TrustCurve, _Mapping]] = ...) -> None: ...

class TrustCurveFitted(_message.Message):
    __slots__ = ("routing", "curve")
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    CURVE_FIELD_NUMBER: _ClassVar[int]
    routing: _common_pb2.RoutingMetadata
    curve: _common_pb2.TrustCurve
    def __init__(self, routing: _Optional[_Union[_common_pb2.RoutingMetadata, _Mapping]] = ..., curve: _Optional[_Union[_common_pb2.TrustCurve, _Mapping]] = ...) -> None: ...

class TrainingFeedback(_message.Message):
    __slots__ = ("routing", "project", "model_version", "run_id", "layer_groups", "depth_profiles", "memorization_flags")
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    LAYER_GROUPS_FIELD_NUMBER: _ClassVar[int]
    DEPTH_PROFILES_FIELD_NUMBER: _ClassVar[int]
    MEMORIZATION_FLAGS_FIELD_NUMBER: _ClassVar[int]
    routing: _common_pb2.RoutingMetadata
    project: str
    model_version: str
    run_id: str
    layer_groups: _containers.RepeatedScalarFieldContainer[str]
    depth_profiles: _containers.RepeatedCompositeFieldContainer[_common_pb2.DepthProfile]
    memorization_flags: _containers.RepeatedCompositeFieldContainer[_common_pb2.MemorizationFlag]
    def __init__(self, routing: _Optional[_Union[_common_pb2.RoutingMetadata, _Mapping]] = ..., project: _Optional[str] = ..., model_version: _Optional[str] = ..., run_id: _Optional[str] = ..., layer_groups: _Optional[_Iterable[str]] = ..., depth_profiles: _Optional[_Iterable[_Union[_common_pb2.DepthProfile, _Mapping]]] = ..., memorization_flags: _Optional[_Iterable[_Union[_common_pb2.MemorizationFlag, _Mapping]]] = ...) -> None: ...

class ContractLoaded(_message.Message):
    __slots__ = ("routing", "contract", "loaded_by")
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    CONTRACT_FIELD_NUMBER: _ClassVar[int]
    LOADED_BY_FIELD_NUMBER: _ClassVar[int]
    routing: _common_pb2.RoutingMetadata
    contract: _common_pb2.LabelingContract
    loaded_by: str
    def __init__(self, routing: _Optional[_Union[_common_pb2.RoutingMetadata, _Mapping]] = ..., contract: _Optional[_Union[_common_pb2.LabelingContract, _Mapping]] = ..., loaded_by: _Optional[str] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("original_topic", "partition", "offset", "key", "payload", "headers", "reason", "consumer_group", "attempts", "failed_at", "service")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ORIGINAL_TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_GROUP_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    FAILED_AT_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    original_topic: str
    partition: int
    offset: int
    key: bytes
    payload: bytes
    headers: _containers.ScalarMap[str, str]
    reason: str
    consumer_group: str
    attempts: int
    failed_at: _timestamp_pb2.Timestamp
    service: str
    def __init__(self, original_topic: _Optional[str] = ..., partition: _Optional[int] = ..., offset: _Optional[int] = ..., key: _Optional[bytes] = ..., payload: _Optional[bytes] = ..., headers: _Optional[_Mapping[str, str]] = ..., reason: _Optional[str] = ..., consumer_group: _Optional[str] = ..., attempts: _Optional[int] = ..., failed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., service: _Optional[str] = ...) -> None: ...

class Probe(_message.Message):
    __slots__ = ("routing", "probe_id", "sequence", "sent_at")
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    PROBE_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    routing: _common_pb2.RoutingMetadata
    probe_id: str
    sequence: int
    sent_at: _timestamp_pb2.Timestamp
    def __init__(self, routing: _Optional[_Union[_common_pb2.RoutingMetadata, _Mapping]] = ..., probe_id: _Optional[str] = ..., sequence: _Optional[int] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AuditRecorded(_message.Message):
    __slots__ = ("routing", "event_id", "at", "service", "actor", "actor_kind", "source", "rpc", "project", "action", "target", "outcome", "code", "reason", "detail_json")
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTOR_KIND_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    RPC_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_JSON_FIELD_NUMBER: _ClassVar[int]
    routing: _common_pb2.RoutingMetadata
    event_id: str
    at: _timestamp_pb2.Timestamp
    service: str
    actor: str
    actor_kind: str
    source: str
    rpc: str
    project: str
    action: str
    target: str
    outcome: str
    code: str
    reason: str
    detail_json: str
    def __init__(self, routing: _Optional[_Union[_common_pb2.RoutingMetadata, _Mapping]] = ..., event_id: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., service: _Optional[str] = ..., actor: _Optional[str] = ..., actor_kind: _Optional[str] = ..., source: _Optional[str] = ..., rpc: _Optional[str] = ..., project: _Optional[str] = ..., action: _Optional[str] = ..., target: _Optional[str] = ..., outcome: _Optional[str] = ..., code: _Optional[str] = ..., reason: _Optional[str] = ..., detail_json: _Optional[str] = ...) -> None: ...
