import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RoutingReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUTING_REASON_UNSPECIFIED: _ClassVar[RoutingReason]
    ROUTING_REASON_UNCERTAINTY: _ClassVar[RoutingReason]
    ROUTING_REASON_DIVERSITY: _ClassVar[RoutingReason]
    ROUTING_REASON_RARE_CLASS: _ClassVar[RoutingReason]
    ROUTING_REASON_DEPTH_FEEDBACK: _ClassVar[RoutingReason]
    ROUTING_REASON_RANDOM_QA: _ClassVar[RoutingReason]
    ROUTING_REASON_GOLD: _ClassVar[RoutingReason]
    ROUTING_REASON_OVERLAP: _ClassVar[RoutingReason]
    ROUTING_REASON_REVIEW: _ClassVar[RoutingReason]
    ROUTING_REASON_RELABEL: _ClassVar[RoutingReason]

class LabelSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LABEL_SOURCE_UNSPECIFIED: _ClassVar[LabelSource]
    LABEL_SOURCE_HUMAN: _ClassVar[LabelSource]
    LABEL_SOURCE_MODEL: _ClassVar[LabelSource]
    LABEL_SOURCE_WEAK: _ClassVar[LabelSource]
    LABEL_SOURCE_EXPERT: _ClassVar[LabelSource]

class ConsensusStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSENSUS_STATUS_UNSPECIFIED: _ClassVar[ConsensusStatus]
    CONSENSUS_STATUS_ACCEPTED: _ClassVar[ConsensusStatus]
    CONSENSUS_STATUS_NEEDS_REVIEW: _ClassVar[ConsensusStatus]
    CONSENSUS_STATUS_EXPERT: _ClassVar[ConsensusStatus]

class ConsensusMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSENSUS_METHOD_UNSPECIFIED: _ClassVar[ConsensusMethod]
    CONSENSUS_METHOD_MAJORITY_VOTE: _ClassVar[ConsensusMethod]
    CONSENSUS_METHOD_DAWID_SKENE: _ClassVar[ConsensusMethod]
    CONSENSUS_METHOD_EXPERT: _ClassVar[ConsensusMethod]
    CONSENSUS_METHOD_PROPAGATED: _ClassVar[ConsensusMethod]
    CONSENSUS_METHOD_MODEL_AUTO_ACCEPT: _ClassVar[ConsensusMethod]

class AnnotatorStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ANNOTATOR_STATUS_UNSPECIFIED: _ClassVar[AnnotatorStatus]
    ANNOTATOR_STATUS_ACTIVE: _ClassVar[AnnotatorStatus]
    ANNOTATOR_STATUS_RETRAIN: _ClassVar[AnnotatorStatus]
    ANNOTATOR_STATUS_BLOCKED: _ClassVar[AnnotatorStatus]

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_ANNOTATOR: _ClassVar[Role]
    ROLE_REVIEWER: _ClassVar[Role]
    ROLE_ADMIN: _ClassVar[Role]
    ROLE_MANAGER: _ClassVar[Role]

class GovernanceMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GOVERNANCE_MODE_UNSPECIFIED: _ClassVar[GovernanceMode]
    GOVERNANCE_MODE_RULES: _ClassVar[GovernanceMode]
    GOVERNANCE_MODE_LEARNED: _ClassVar[GovernanceMode]
ROUTING_REASON_UNSPECIFIED: RoutingReason
ROUTING_REASON_UNCERTAINTY: RoutingReason
ROUTING_REASON_DIVERSITY: RoutingReason
ROUTING_REASON_RARE_CLASS: RoutingReason
ROUTING_REASON_DEPTH_FEEDBACK: RoutingReason
ROUTING_REASON_RANDOM_QA: RoutingReason
ROUTING_REASON_GOLD: RoutingReason
ROUTING_REASON_OVERLAP: RoutingReason
ROUTING_REASON_REVIEW: RoutingReason
ROUTING_REASON_RELABEL: RoutingReason
LABEL_SOURCE_UNSPECIFIED: LabelSource
LABEL_SOURCE_HUMAN: LabelSource
LABEL_SOURCE_MODEL: LabelSource
LABEL_SOURCE_WEAK: LabelSource
LABEL_SOURCE_EXPERT: LabelSource
CONSENSUS_STATUS_UNSPECIFIED: ConsensusStatus
CONSENSUS_STATUS_ACCEPTED: ConsensusStatus
CONSENSUS_STATUS_NEEDS_REVIEW: ConsensusStatus
CONSENSUS_STATUS_EXPERT: ConsensusStatus
CONSENSUS_METHOD_UNSPECIFIED: ConsensusMethod
CONSENSUS_METHOD_MAJORITY_VOTE: ConsensusMethod
CONSENSUS_METHOD_DAWID_SKENE: ConsensusMethod
CONSENSUS_METHOD_EXPERT: ConsensusMethod
CONSENSUS_METHOD_PROPAGATED: ConsensusMethod
CONSENSUS_METHOD_MODEL_AUTO_ACCEPT: ConsensusMethod
ANNOTATOR_STATUS_UNSPECIFIED: AnnotatorStatus
ANNOTATOR_STATUS_ACTIVE: AnnotatorStatus
ANNOTATOR_STATUS_RETRAIN: AnnotatorStatus
ANNOTATOR_STATUS_BLOCKED: AnnotatorStatus
ROLE_UNSPECIFIED: Role
ROLE_ANNOTATOR: Role
ROLE_REVIEWER: Role
ROLE_ADMIN: Role
ROLE_MANAGER: Role
GOVERNANCE_MODE_UNSPECIFIED: GovernanceMode
GOVERNANCE_MODE_RULES: GovernanceMode
GOVERNANCE_MODE_LEARNED: GovernanceMode

class RoutingMetadata(_message.Message):
    __slots__ = ("trace_id", "source_service", "reason", "priority", "project", "ontology_version", "attributes", "score")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SERVICE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ONTOLOGY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    trace_id: str
    source_service: str
    reason: RoutingReason
    priority: int
    project: str
    ontology_version: str
    attributes: _containers.ScalarMap[str, str]
    score: float
    def __init__(self, trace_id: _Optional[str] = ..., source_service: _Optional[str] = ..., reason: _Optional[_Union[RoutingReason, str]] = ..., priority: _Optional[int] = ..., project: _Optional[str] = ..., ontology_version: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., score: _Optional[float] = ...) -> None: ...

class FeatureVector(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("png", "uri", "width", "height")
    PNG_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    png: bytes
    uri: str
    width: int
    height: int
    def __init__(self, png: _Optional[bytes] = ..., uri: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class ItemContent(_message.Message):
    __slots__ = ("text", "features", "image")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    text: str
    features: FeatureVector
    image: Image
    def __init__(self, text: _Optional[str] = ..., features: _Optional[_Union[FeatureVector, _Mapping]] = ..., image: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...

class Item(_message.Message):
    __slots__ = ("item_id", "project", "content", "metadata", "content_hash", "external_id", "imported_at", "canonical_item_id")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    IMPORTED_AT_FIELD_NUMBER: _ClassVar[int]
    CANONICAL_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    project: str
    content: ItemContent
    metadata: _containers.ScalarMap[str, str]
    content_hash: str
    external_id: str
    imported_at: _timestamp_pb2.Timestamp
    canonical_item_id: str
    def __init__(self, item_id: _Optional[str] = ..., project: _Optional[str] = ..., content: _Optional[_Union[ItemContent, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., content_hash: _Optional[str] = ..., external_id: _Optional[str] = ..., imported_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., canonical_item_id: _Optional[str] = ...) -> None: ...

class PreLabel(_message.Message):
    __slots__ = ("value", "confidence", "model_version", "calibrated")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CALIBRATED_FIELD_NUMBER: _ClassVar[int]
    value: str
    confidence: float
    model_version: str
    calibrated: bool
    def __init__(self, value: _Optional[str] = ..., confidence: _Optional[float] = ..., model_version: _Optional[str] = ..., calibrated: _Optional[bool] = ...) -> None: ...

class Label(_message.Message):
    __slots__ = ("label_id", "task_id", "item_id", "annotator_id", "value", "ontology_version", "submitted_at", "duration_ms", "source", "shown_prelabel", "project", "active_ms")
    LABEL_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ONTOLOGY_VERSION_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SHOWN_PRELABEL_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_MS_FIELD_NUMBER: _ClassVar[int]
    label_id: str
    task_id: str
    item_id: str
    annotator_id: str
    value: str
    ontology_version: str
    submitted_at: _timestamp_pb2.Timestamp
    duration_ms: int
    source: LabelSource
    shown_prelabel: PreLabel
    project: str
    active_ms: int
    def __init__(self, label_id: _Optional[str] = ..., task_id: _Optional[str] = ..., item_id: _Optional[str] = ..., annotator_id: _Optional[str] = ..., value: _Optional[str] = ..., ontology_version: _Optional[str] = ..., submitted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration_ms: _Optional[int] = ..., source: _Optional[_Union[LabelSource, str]] = ..., shown_prelabel: _Optional[_Union[PreLabel, _Mapping]] = ..., project: _Optional[str] = ..., active_ms: _Optional[int] = ...) -> None: ...

class Vote(_message.Message):
    __slots__ = ("annotator_id", "value", "weight", "label_id", "source")
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    LABEL_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    annotator_id: str
    value: str
    weight: float
    label_id: str
    source: LabelSource
    def __init__(self, annotator_id: _Optional[str] = ..., value: _Optional[str] = ..., weight: _Optional[float] = ..., label_id: _Optional[str] = ..., source: _Optional[_Union[LabelSource, str]] = ...) -> None: ...

class ClassScore(_message.Message):
    __slots__ = ("class_label", "score")
    CLASS_LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    class_label: str
    score: float
    def __init__(self, class_label: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class ConsensusLabel(_message.Message):
    __slots__ = ("item_id", "value", "consensus_score", "votes", "method", "status", "project", "ontology_version", "decided_at", "propagated_from_item_id", "posterior")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CONSENSUS_SCORE_FIELD_NUMBER: _ClassVar[int]
    VOTES_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ONTOLOGY_VERSION_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    PROPAGATED_FROM_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    POSTERIOR_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    value: str
    consensus_score: float
    votes: _containers.RepeatedCompositeFieldContainer[Vote]
    method: ConsensusMethod
    status: ConsensusStatus
    project: str
    ontology_version: str
    decided_at: _timestamp_pb2.Timestamp
    propagated_from_item_id: str
    posterior: _containers.RepeatedCompositeFieldContainer[ClassScore]
    def __init__(self, item_id: _Optional[str] = ..., value: _Optional[str] = ..., consensus_score: _Optional[float] = ..., votes: _Optional[_Iterable[_Union[Vote, _Mapping]]] = ..., method: _Optional[_Union[ConsensusMethod, str]] = ..., status: _Optional[_Union[ConsensusStatus, str]] = ..., project: _Optional[str] = ..., ontology_version: _Optional[str] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., propagated_from_item_id: _Optional[str] = ..., posterior: _Optional[_Iterable[_Union[ClassScore, _Mapping]]] = ...) -> None: ...

class McSample(_message.Message):
    __slots__ = ("probabilities",)
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, probabilities: _Optional[_Iterable[float]] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("item_id", "model_version", "project", "classes", "probabilities", "predicted_class", "confidence", "calibrated", "raw_confidence", "entropy", "margin", "embedding", "mc_samples", "predicted_at", "auto_accept", "spot_check")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_CLASS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    CALIBRATED_FIELD_NUMBER: _ClassVar[int]
    RAW_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    ENTROPY_FIELD_NUMBER: _ClassVar[int]
    MARGIN_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    MC_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_AT_FIELD_NUMBER: _ClassVar[int]
    AUTO_ACCEPT_FIELD_NUMBER: _ClassVar[int]
    SPOT_CHECK_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    model_version: str
    project: str
    classes: _containers.RepeatedScalarFieldContainer[str]
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    predicted_class: str
    confidence: float
    calibrated: bool
    raw_confidence: float
    entropy: float
    margin: float
    embedding: _containers.RepeatedScalarFieldContainer[float]
    mc_samples: _containers.RepeatedCompositeFieldContainer[McSample]
    predicted_at: _timestamp_pb2.Timestamp
    auto_accept: bool
    spot_check: bool
    def __init__(self, item_id: _Optional[str] = ..., model_version: _Optional[str] = ..., project: _Optional[str] = ..., classes: _Optional[_Iterable[str]] = ..., probabilities: _Optional[_Iterable[float]] = ..., predicted_class: _Optional[str] = ..., confidence: _Optional[float] = ..., calibrated: _Optional[bool] = ..., raw_confidence: _Optional[float] = ..., entropy: _Optional[float] = ..., margin: _Optional[float] = ..., embedding: _Optional[_Iterable[float]] = ..., mc_samples: _Optional[_Iterable[_Union[McSample, _Mapping]]] = ..., predicted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., auto_accept: _Optional[bool] = ..., spot_check: _Optional[bool] = ...) -> None: ...

class ModelMetrics(_message.Message):
    __slots__ = ("accuracy", "loss", "ece_before", "ece_after", "temperature", "n_eval", "per_class_accuracy")
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    ECE_BEFORE_FIELD_NUMBER: _ClassVar[int]
    ECE_AFTER_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    N_EVAL_FIELD_NUMBER: _ClassVar[int]
    PER_CLASS_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    accuracy: float
    loss: float
    ece_before: float
    ece_after: float
    temperature: float
    n_eval: int
    per_class_accuracy: _containers.RepeatedCompositeFieldContainer[ClassScore]
    def __init__(self, accuracy: _Optional[float] = ..., loss: _Optional[float] = ..., ece_before: _Optional[float] = ..., ece_after: _Optional[float] = ..., temperature: _Optional[float] = ..., n_eval: _Optional[int] = ..., per_class_accuracy: _Optional[_Iterable[_Union[ClassScore, _Mapping]]] = ...) -> None: ...

class DepthProfile(_message.Message):
    __slots__ = ("class_label", "entropy_by_group")
    CLASS_LABEL_FIELD_NUMBER: _ClassVar[int]
    ENTROPY_BY_GROUP_FIELD_NUMBER: _ClassVar[int]
    class_label: str
    entropy_by_group: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, class_label: _Optional[str] = ..., entropy_by_group: _Optional[_Iterable[float]] = ...) -> None: ...

class MemorizationFlag(_message.Message):
    __slots__ = ("label_id", "item_id", "annotator_ids", "value", "reason", "score")
    LABEL_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_IDS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    label_id: str
    item_id: str
    annotator_ids: _containers.RepeatedScalarFieldContainer[str]
    value: str
    reason: str
    score: float
    def __init__(self, label_id: _Optional[str] = ..., item_id: _Optional[str] = ..., annotator_ids: _Optional[_Iterable[str]] = ..., value: _Optional[str] = ..., reason: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class ClassDefinition(_message.Message):
    __slots__ = ("name", "definition", "positive_examples", "negative_examples")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    name: str
    definition: str
    positive_examples: _containers.RepeatedScalarFieldContainer[str]
    negative_examples: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., definition: _Optional[str] = ..., positive_examples: _Optional[_Iterable[str]] = ..., negative_examples: _Optional[_Iterable[str]] = ...) -> None: ...

class EdgeCaseRuling(_message.Message):
    __slots__ = ("case", "ruling")
    CASE_FIELD_NUMBER: _ClassVar[int]
    RULING_FIELD_NUMBER: _ClassVar[int]
    case: str
    ruling: str
    def __init__(self, case: _Optional[str] = ..., ruling: _Optional[str] = ...) -> None: ...

class OverlapPolicy(_message.Message):
    __slots__ = ("min", "max")
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    min: int
    max: int
    def __init__(self, min: _Optional[int] = ..., max: _Optional[int] = ...) -> None: ...

class AgreementPolicy(_message.Message):
    __slots__ = ("metric", "threshold")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    metric: str
    threshold: float
    def __init__(self, metric: _Optional[str] = ..., threshold: _Optional[float] = ...) -> None: ...

class ActiveLearningTrigger(_message.Message):
    __slots__ = ("retrain_every", "batch_size", "strategy")
    RETRAIN_EVERY_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    retrain_every: int
    batch_size: int
    strategy: str
    def __init__(self, retrain_every: _Optional[int] = ..., batch_size: _Optional[int] = ..., strategy: _Optional[str] = ...) -> None: ...

class AutoAcceptPolicy(_message.Message):
    __slots__ = ("confidence_threshold", "min_precision", "spot_check_rate", "enabled")
    CONFIDENCE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MIN_PRECISION_FIELD_NUMBER: _ClassVar[int]
    SPOT_CHECK_RATE_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    confidence_threshold: float
    min_precision: float
    spot_check_rate: float
    enabled: bool
    def __init__(self, confidence_threshold: _Optional[float] = ..., min_precision: _Optional[float] = ..., spot_check_rate: _Optional[float] = ..., enabled: _Optional[bool] = ...) -> None: ...

class DepthRule(_message.Message):
    __slots__ = ("min_consensus_score", "source", "influence_depth", "gold", "gradient_scale", "group_scales")
    MIN_CONSENSUS_SCORE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    INFLUENCE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    GOLD_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_SCALE_FIELD_NUMBER: _ClassVar[int]
    GROUP_SCALES_FIELD_NUMBER: _ClassVar[int]
    min_consensus_score: float
    source: LabelSource
    influence_depth: int
    gold: bool
    gradient_scale: float
    group_scales: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, min_consensus_score: _Optional[float] = ..., source: _Optional[_Union[LabelSource, str]] = ..., influence_depth: _Optional[int] = ..., gold: _Optional[bool] = ..., gradient_scale: _Optional[float] = ..., group_scales: _Optional[_Iterable[float]] = ...) -> None: ...

class GovernancePolicy(_message.Message):
    __slots__ = ("rules", "mode")
    RULES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[DepthRule]
    mode: GovernanceMode
    def __init__(self, rules: _Optional[_Iterable[_Union[DepthRule, _Mapping]]] = ..., mode: _Optional[_Union[GovernanceMode, str]] = ...) -> None: ...

class TrustCurve(_message.Message):
    __slots__ = ("project", "scores", "right", "gold", "prior_strength", "fitted_at")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    RIGHT_FIELD_NUMBER: _ClassVar[int]
    GOLD_FIELD_NUMBER: _ClassVar[int]
    PRIOR_STRENGTH_FIELD_NUMBER: _ClassVar[int]
    FITTED_AT_FIELD_NUMBER: _ClassVar[int]
    project: str
    scores: _containers.RepeatedScalarFieldContainer[float]
    right: _containers.RepeatedScalarFieldContainer[float]
    gold: int
    prior_strength: float
    fitted_at: _timestamp_pb2.Timestamp
    def __init__(self, project: _Optional[str] = ..., scores: _Optional[_Iterable[float]] = ..., right: _Optional[_Iterable[float]] = ..., gold: _Optional[int] = ..., prior_strength: _Optional[float] = ..., fitted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CampaignBudget(_message.Message):
    __slots__ = ("label_budget", "target_accuracy")
    LABEL_BUDGET_FIELD_NUMBER: _ClassVar[int]
    TARGET_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    label_budget: int
    target_accuracy: float
    def __init__(self, label_budget: _Optional[int] = ..., target_accuracy: _Optional[float] = ...) -> None: ...

class LabelingContract(_message.Message):
    __slots__ = ("project", "version", "classes", "edge_cases", "overlap", "consensus_threshold", "gold_rate", "gold_accuracy_threshold", "agreement", "active_learning", "auto_accept", "governance", "hide_prelabels", "lease_seconds", "budget", "loaded_at", "gold_probation_tasks", "gold_probation_rate", "gold_honeypot_rate", "gold_max_anchoring")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    EDGE_CASES_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    CONSENSUS_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    GOLD_RATE_FIELD_NUMBER: _ClassVar[int]
    GOLD_ACCURACY_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_LEARNING_FIELD_NUMBER: _ClassVar[int]
    AUTO_ACCEPT_FIELD_NUMBER: _ClassVar[int]
    GOVERNANCE_FIELD_NUMBER: _ClassVar[int]
    HIDE_PRELABELS_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    GOLD_PROBATION_TASKS_FIELD_NUMBER: _ClassVar[int]
    GOLD_PROBATION_RATE_FIELD_NUMBER: _ClassVar[int]
    GOLD_HONEYPOT_RATE_FIELD_NUMBER: _ClassVar[int]
    GOLD_MAX_ANCHORING_FIELD_NUMBER: _ClassVar[int]
    project: str
    version: str
    classes: _containers.RepeatedCompositeFieldContainer[ClassDefinition]
    edge_cases: _containers.RepeatedCompositeFieldContainer[EdgeCaseRuling]
    overlap: OverlapPolicy
    consensus_threshold: float
    gold_rate: float
    gold_accuracy_threshold: float
    agreement: AgreementPolicy
    active_learning: ActiveLearningTrigger
    auto_accept: AutoAcceptPolicy
    governance: GovernancePolicy
    hide_prelabels: bool
    lease_seconds: int
    budget: CampaignBudget
    loaded_at: _timestamp_pb2.Timestamp
    gold_probation_tasks: int
    gold_probation_rate: float
    gold_honeypot_rate: float
    gold_max_anchoring: float
    def __init__(self, project: _Optional[str] = ..., version: _Optional[str] = ..., classes: _Optional[_Iterable[_Union[ClassDefinition, _Mapping]]] = ..., edge_cases: _Optional[_Iterable[_Union[EdgeCaseRuling, _Mapping]]] = ..., overlap: _Optional[_Union[OverlapPolicy, _Mapping]] = ..., consensus_threshold: _Optional[float] = ..., gold_rate: _Optional[float] = ..., gold_accuracy_threshold: _Optional[float] = ..., agreement: _Optional[_Union[AgreementPolicy, _Mapping]] = ..., active_learning: _Optional[_Union[ActiveLearningTrigger, _Mapping]] = ..., auto_accept: _Optional[_Union[AutoAcceptPolicy, _Mapping]] = ..., governance: _Optional[_Union[GovernancePolicy, _Mapping]] = ..., hide_prelabels: _Optional[bool] = ..., lease_seconds: _Optional[int] = ..., budget: _Optional[_Union[CampaignBudget, _Mapping]] = ..., loaded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., gold_probation_tasks: _Optional[int] = ..., gold_probation_rate: _Optional[float] = ..., gold_honeypot_rate: _Optional[float] = ..., gold_max_anchoring: _Optional[float] = ...) -> None: ...
