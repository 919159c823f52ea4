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

class ExportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_FORMAT_UNSPECIFIED: _ClassVar[ExportFormat]
    EXPORT_FORMAT_JSONL: _ClassVar[ExportFormat]
    EXPORT_FORMAT_LABEL_STUDIO: _ClassVar[ExportFormat]
    EXPORT_FORMAT_CSV: _ClassVar[ExportFormat]
    EXPORT_FORMAT_PARQUET: _ClassVar[ExportFormat]
EXPORT_FORMAT_UNSPECIFIED: ExportFormat
EXPORT_FORMAT_JSONL: ExportFormat
EXPORT_FORMAT_LABEL_STUDIO: ExportFormat
EXPORT_FORMAT_CSV: ExportFormat
EXPORT_FORMAT_PARQUET: ExportFormat

class ItemConsensusRequest(_message.Message):
    __slots__ = ("item_id",)
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    def __init__(self, item_id: _Optional[str] = ...) -> None: ...

class ItemConsensusResponse(_message.Message):
    __slots__ = ("consensus", "review")
    CONSENSUS_FIELD_NUMBER: _ClassVar[int]
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    consensus: _common_pb2.ConsensusLabel
    review: ReviewInfo
    def __init__(self, consensus: _Optional[_Union[_common_pb2.ConsensusLabel, _Mapping]] = ..., review: _Optional[_Union[ReviewInfo, _Mapping]] = ...) -> None: ...

class ReviewInfo(_message.Message):
    __slots__ = ("kind", "detail", "opened_at", "suspected_label_ids", "model_version")
    KIND_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    OPENED_AT_FIELD_NUMBER: _ClassVar[int]
    SUSPECTED_LABEL_IDS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    kind: str
    detail: str
    opened_at: _timestamp_pb2.Timestamp
    suspected_label_ids: _containers.RepeatedScalarFieldContainer[str]
    model_version: str
    def __init__(self, kind: _Optional[str] = ..., detail: _Optional[str] = ..., opened_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., suspected_label_ids: _Optional[_Iterable[str]] = ..., model_version: _Optional[str] = ...) -> None: ...

class ConfusionRow(_message.Message):
    __slots__ = ("true_class", "row")
    TRUE_CLASS_FIELD_NUMBER: _ClassVar[int]
    ROW_FIELD_NUMBER: _ClassVar[int]
    true_class: str
    row: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, true_class: _Optional[str] = ..., row: _Optional[_Iterable[float]] = ...) -> None: ...

class AnnotatorScore(_message.Message):
    __slots__ = ("annotator_id", "gold_accuracy", "gold_accuracy_lower_bound", "gold_answered", "agreement_with_consensus", "classes", "confusion", "labels", "median_seconds", "status", "wrong_prelabels_shown", "anchoring_rate", "anchoring_lower_bound", "anchoring_upper_bound")
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    GOLD_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    GOLD_ACCURACY_LOWER_BOUND_FIELD_NUMBER: _ClassVar[int]
    GOLD_ANSWERED_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_WITH_CONSENSUS_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    CONFUSION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    WRONG_PRELABELS_SHOWN_FIELD_NUMBER: _ClassVar[int]
    ANCHORING_RATE_FIELD_NUMBER: _ClassVar[int]
    ANCHORING_LOWER_BOUND_FIELD_NUMBER: _ClassVar[int]
    ANCHORING_UPPER_BOUND_FIELD_NUMBER: _ClassVar[int]
    annotator_id: str
    gold_accuracy: float
    gold_accuracy_lower_bound: float
    gold_answered: int
    agreement_with_consensus: float
    classes: _containers.RepeatedScalarFieldContainer[str]
    confusion: _containers.RepeatedCompositeFieldContainer[ConfusionRow]
    labels: int
    median_seconds: float
    status: _common_pb2.AnnotatorStatus
    wrong_prelabels_shown: int
    anchoring_rate: float
    anchoring_lower_bound: float
    anchoring_upper_bound: float
    def __init__(self, annotator_id: _Optional[str] = ..., gold_accuracy: _Optional[float] = ..., gold_accuracy_lower_bound: _Optional[float] = ..., gold_answered: _Optional[int] = ..., agreement_with_consensus: _Optional[float] = ..., classes: _Optional[_Iterable[str]] = ..., confusion: _Optional[_Iterable[_Union[ConfusionRow, _Mapping]]] = ..., labels: _Optional[int] = ..., median_seconds: _Optional[float] = ..., status: _Optional[_Union[_common_pb2.AnnotatorStatus, str]] = ..., wrong_prelabels_shown: _Optional[int] = ..., anchoring_rate: _Optional[float] = ..., anchoring_lower_bound: _Optional[float] = ..., anchoring_upper_bound: _Optional[float] = ...) -> None: ...

class AnnotatorScoresRequest(_message.Message):
    __slots__ = ("project", "annotator_ids")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_IDS_FIELD_NUMBER: _ClassVar[int]
    project: str
    annotator_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, project: _Optional[str] = ..., annotator_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AnnotatorScoresResponse(_message.Message):
    __slots__ = ("annotators",)
    ANNOTATORS_FIELD_NUMBER: _ClassVar[int]
    annotators: _containers.RepeatedCompositeFieldContainer[AnnotatorScore]
    def __init__(self, annotators: _Optional[_Iterable[_Union[AnnotatorScore, _Mapping]]] = ...) -> None: ...

class AgreementSlice(_message.Message):
    __slots__ = ("dimension", "key", "krippendorff_alpha", "fleiss_kappa", "mean_cohen_kappa", "items")
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    KRIPPENDORFF_ALPHA_FIELD_NUMBER: _ClassVar[int]
    FLEISS_KAPPA_FIELD_NUMBER: _ClassVar[int]
    MEAN_COHEN_KAPPA_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    dimension: str
    key: str
    krippendorff_alpha: float
    fleiss_kappa: float
    mean_cohen_kappa: float
    items: int
    def __init__(self, dimension: _Optional[str] = ..., key: _Optional[str] = ..., krippendorff_alpha: _Optional[float] = ..., fleiss_kappa: _Optional[float] = ..., mean_cohen_kappa: _Optional[float] = ..., items: _Optional[int] = ...) -> None: ...

class AgreementReportRequest(_message.Message):
    __slots__ = ("project", "since", "until", "window_seconds")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    project: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    window_seconds: int
    def __init__(self, project: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_seconds: _Optional[int] = ...) -> None: ...

class AgreementReportResponse(_message.Message):
    __slots__ = ("overall", "slices", "metric", "threshold", "done")
    OVERALL_FIELD_NUMBER: _ClassVar[int]
    SLICES_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    overall: AgreementSlice
    slices: _containers.RepeatedCompositeFieldContainer[AgreementSlice]
    metric: str
    threshold: float
    done: bool
    def __init__(self, overall: _Optional[_Union[AgreementSlice, _Mapping]] = ..., slices: _Optional[_Iterable[_Union[AgreementSlice, _Mapping]]] = ..., metric: _Optional[str] = ..., threshold: _Optional[float] = ..., done: _Optional[bool] = ...) -> None: ...

class ResolveReviewRequest(_message.Message):
    __slots__ = ("item_id", "value", "note")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    value: str
    note: str
    def __init__(self, item_id: _Optional[str] = ..., value: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class ResolveReviewResponse(_message.Message):
    __slots__ = ("consensus",)
    CONSENSUS_FIELD_NUMBER: _ClassVar[int]
    consensus: _common_pb2.ConsensusLabel
    def __init__(self, consensus: _Optional[_Union[_common_pb2.ConsensusLabel, _Mapping]] = ...) -> None: ...

class DatasetReportRequest(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: str
    def __init__(self, project: _Optional[str] = ...) -> None: ...

class DatasetReportResponse(_message.Message):
    __slots__ = ("report_json", "html")
    REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    HTML_FIELD_NUMBER: _ClassVar[int]
    report_json: str
    html: str
    def __init__(self, report_json: _Optional[str] = ..., html: _Optional[str] = ...) -> None: ...

class ExportLabelsRequest(_message.Message):
    __slots__ = ("project", "format", "inline_images")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    INLINE_IMAGES_FIELD_NUMBER: _ClassVar[int]
    project: str
    format: ExportFormat
    inline_images: bool
    def __init__(self, project: _Optional[str] = ..., format: _Optional[_Union[ExportFormat, str]] = ..., inline_images: _Optional[bool] = ...) -> None: ...

class ExportLabelsResponse(_message.Message):
    __slots__ = ("chunk", "records")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    records: int
    def __init__(self, chunk: _Optional[bytes] = ..., records: _Optional[int] = ...) -> None: ...

class PairwiseAgreementRequest(_message.Message):
    __slots__ = ("project", "max_annotators")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    MAX_ANNOTATORS_FIELD_NUMBER: _ClassVar[int]
    project: str
    max_annotators: int
    def __init__(self, project: _Optional[str] = ..., max_annotators: _Optional[int] = ...) -> None: ...

class AnnotatorPair(_message.Message):
    __slots__ = ("a", "b", "shared_items", "agreed", "cohen_kappa")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    SHARED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    AGREED_FIELD_NUMBER: _ClassVar[int]
    COHEN_KAPPA_FIELD_NUMBER: _ClassVar[int]
    a: str
    b: str
    shared_items: int
    agreed: int
    cohen_kappa: float
    def __init__(self, a: _Optional[str] = ..., b: _Optional[str] = ..., shared_items: _Optional[int] = ..., agreed: _Optional[int] = ..., cohen_kappa: _Optional[float] = ...) -> None: ...

class PairwiseAgreementResponse(_message.Message):
    __slots__ = ("annotators", "pairs")
    ANNOTATORS_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    annotators: _containers.RepeatedScalarFieldContainer[str]
    pairs: _containers.RepeatedCompositeFieldContainer[AnnotatorPair]
    def __init__(self, annotators: _Optional[_Iterable[str]] = ..., pairs: _Optional[_Iterable[_Union[AnnotatorPair, _Mapping]]] = ...) -> None: ...

class PairDisagreementsRequest(_message.Message):
    __slots__ = ("project", "a", "b", "limit")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    project: str
    a: str
    b: str
    limit: int
    def __init__(self, project: _Optional[str] = ..., a: _Optional[str] = ..., b: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class Disagreement(_message.Message):
    __slots__ = ("item_id", "value_a", "value_b", "consensus_value", "state")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_A_FIELD_NUMBER: _ClassVar[int]
    VALUE_B_FIELD_NUMBER: _ClassVar[int]
    CONSENSUS_VALUE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    value_a: str
    value_b: str
    consensus_value: str
    state: str
    def __init__(self, item_id: _Optional[str] = ..., value_a: _Optional[str] = ..., value_b: _Optional[str] = ..., consensus_value: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class PairDisagreementsResponse(_message.Message):
    __slots__ = ("items", "total")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Disagreement]
    total: int
    def __init__(self, items: _Optional[_Iterable[_Union[Disagreement, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class ProjectProgressRequest(_message.Message):
    __slots__ = ("project", "bucket_seconds")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    BUCKET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    project: str
    bucket_seconds: int
    def __init__(self, project: _Optional[str] = ..., bucket_seconds: _Optional[int] = ...) -> None: ...

class ProgressBucket(_message.Message):
    __slots__ = ("start", "human_labels", "model_labels", "decided", "reviews_opened", "reviews_resolved")
    START_FIELD_NUMBER: _ClassVar[int]
    HUMAN_LABELS_FIELD_NUMBER: _ClassVar[int]
    MODEL_LABELS_FIELD_NUMBER: _ClassVar[int]
    DECIDED_FIELD_NUMBER: _ClassVar[int]
    REVIEWS_OPENED_FIELD_NUMBER: _ClassVar[int]
    REVIEWS_RESOLVED_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    human_labels: int
    model_labels: int
    decided: int
    reviews_opened: int
    reviews_resolved: int
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., human_labels: _Optional[int] = ..., model_labels: _Optional[int] = ..., decided: _Optional[int] = ..., reviews_opened: _Optional[int] = ..., reviews_resolved: _Optional[int] = ...) -> None: ...

class ProjectProgressResponse(_message.Message):
    __slots__ = ("bucket_seconds", "buckets", "items_by_state", "decided_by_model", "open_reviews", "human_labels_last_hour")
    class ItemsByStateEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    BUCKET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_BY_STATE_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_MODEL_FIELD_NUMBER: _ClassVar[int]
    OPEN_REVIEWS_FIELD_NUMBER: _ClassVar[int]
    HUMAN_LABELS_LAST_HOUR_FIELD_NUMBER: _ClassVar[int]
    bucket_seconds: int
    buckets: _containers.RepeatedCompositeFieldContainer[ProgressBucket]
    items_by_state: _containers.ScalarMap[str, int]
    decided_by_model: int
    open_reviews: int
    human_labels_last_hour: int
    def __init__(self, bucket_seconds: _Optional[int] = ..., buckets: _Optional[_Iterable[_Union[ProgressBucket, _Mapping]]] = ..., items_by_state: _Optional[_Mapping[str, int]] = ..., decided_by_model: _Optional[int] = ..., open_reviews: _Optional[int] = ..., human_labels_last_hour: _Optional[int] = ...) -> None: ...

class ContestedItemsRequest(_message.Message):
    __slots__ = ("project", "class_label", "limit")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    CLASS_LABEL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    project: str
    class_label: str
    limit: int
    def __init__(self, project: _Optional[str] = ..., class_label: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ContestedItem(_message.Message):
    __slots__ = ("item_id", "values", "consensus_value", "state")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    CONSENSUS_VALUE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    values: _containers.RepeatedScalarFieldContainer[str]
    consensus_value: str
    state: str
    def __init__(self, item_id: _Optional[str] = ..., values: _Optional[_Iterable[str]] = ..., consensus_value: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class ContestedItemsResponse(_message.Message):
    __slots__ = ("items", "total")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ContestedItem]
    total: int
    def __init__(self, items: _Optional[_Iterable[_Union[ContestedItem, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class ImportedVote(_message.Message):
    __slots__ = ("line", "item", "annotator", "value", "duration_ms", "submitted_at")
    LINE_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    line: int
    item: str
    annotator: str
    value: str
    duration_ms: int
    submitted_at: _timestamp_pb2.Timestamp
    def __init__(self, line: _Optional[int] = ..., item: _Optional[str] = ..., annotator: _Optional[str] = ..., value: _Optional[str] = ..., duration_ms: _Optional[int] = ..., submitted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ImportVotesRequest(_message.Message):
    __slots__ = ("project", "votes")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    VOTES_FIELD_NUMBER: _ClassVar[int]
    project: str
    votes: _containers.RepeatedCompositeFieldContainer[ImportedVote]
    def __init__(self, project: _Optional[str] = ..., votes: _Optional[_Iterable[_Union[ImportedVote, _Mapping]]] = ...) -> None: ...

class ImportLineError(_message.Message):
    __slots__ = ("line", "message")
    LINE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    line: int
    message: str
    def __init__(self, line: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ImportVotesResponse(_message.Message):
    __slots__ = ("received", "imported", "already", "gold", "rejected", "errors", "items", "accepted")
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    IMPORTED_FIELD_NUMBER: _ClassVar[int]
    ALREADY_FIELD_NUMBER: _ClassVar[int]
    GOLD_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    received: int
    imported: int
    already: int
    gold: int
    rejected: int
    errors: _containers.RepeatedCompositeFieldContainer[ImportLineError]
    items: int
    accepted: int
    def __init__(self, received: _Optional[int] = ..., imported: _Optional[int] = ..., already: _Optional[int] = ..., gold: _Optional[int] = ..., rejected: _Optional[int] = ..., errors: _Optional[_Iterable[_Union[ImportLineError, _Mapping]]] = ..., items: _Optional[int] = ..., accepted: _Optional[int] = ...) -> None: ...
