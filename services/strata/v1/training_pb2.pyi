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

class RunState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATE_UNSPECIFIED: _ClassVar[RunState]
    RUN_STATE_QUEUED: _ClassVar[RunState]
    RUN_STATE_RUNNING: _ClassVar[RunState]
    RUN_STATE_SUCCEEDED: _ClassVar[RunState]
    RUN_STATE_FAILED: _ClassVar[RunState]
RUN_STATE_UNSPECIFIED: RunState
RUN_STATE_QUEUED: RunState
RUN_STATE_RUNNING: RunState
RUN_STATE_SUCCEEDED: RunState
RUN_STATE_FAILED: RunState

class StartRunRequest(_message.Message):
    __slots__ = ("project", "family", "num_workers", "epochs", "reason")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    NUM_WORKERS_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    project: str
    family: str
    num_workers: int
    epochs: int
    reason: str
    def __init__(self, project: _Optional[str] = ..., family: _Optional[str] = ..., num_workers: _Optional[int] = ..., epochs: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class StartRunResponse(_message.Message):
    __slots__ = ("run_id", "state", "runs_ahead")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RUNS_AHEAD_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    state: RunState
    runs_ahead: int
    def __init__(self, run_id: _Optional[str] = ..., state: _Optional[_Union[RunState, str]] = ..., runs_ahead: _Optional[int] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("run_id", "project", "state", "progress", "epoch", "epochs", "metrics", "model_version", "error", "started_at", "finished_at", "samples_seen", "samples_per_second", "resumed_from_checkpoint", "num_workers", "governance_mode", "trust_curve")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_SEEN_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FROM_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    NUM_WORKERS_FIELD_NUMBER: _ClassVar[int]
    GOVERNANCE_MODE_FIELD_NUMBER: _ClassVar[int]
    TRUST_CURVE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    project: str
    state: RunState
    progress: float
    epoch: int
    epochs: int
    metrics: _common_pb2.ModelMetrics
    model_version: str
    error: str
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    samples_seen: int
    samples_per_second: float
    resumed_from_checkpoint: bool
    num_workers: int
    governance_mode: _common_pb2.GovernanceMode
    trust_curve: _common_pb2.TrustCurve
    def __init__(self, run_id: _Optional[str] = ..., project: _Optional[str] = ..., state: _Optional[_Union[RunState, str]] = ..., progress: _Optional[float] = ..., epoch: _Optional[int] = ..., epochs: _Optional[int] = ..., metrics: _Optional[_Union[_common_pb2.ModelMetrics, _Mapping]] = ..., model_version: _Optional[str] = ..., error: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., samples_seen: _Optional[int] = ..., samples_per_second: _Optional[float] = ..., resumed_from_checkpoint: _Optional[bool] = ..., num_workers: _Optional[int] = ..., governance_mode: _Optional[_Union[_common_pb2.GovernanceMode, str]] = ..., trust_curve: _Optional[_Union[_common_pb2.TrustCurve, _Mapping]] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class GetRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: Run
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class Influence(_message.Message):
    __slots__ = ("label_id", "item_id", "annotator_ids", "value", "consensus_score", "score", "by_group")
    LABEL_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_IDS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CONSENSUS_SCORE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    BY_GROUP_FIELD_NUMBER: _ClassVar[int]
    label_id: str
    item_id: str
    annotator_ids: _containers.RepeatedScalarFieldContainer[str]
    value: str
    consensus_score: float
    score: float
    by_group: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, label_id: _Optional[str] = ..., item_id: _Optional[str] = ..., annotator_ids: _Optional[_Iterable[str]] = ..., value: _Optional[str] = ..., consensus_score: _Optional[float] = ..., score: _Optional[float] = ..., by_group: _Optional[_Iterable[float]] = ...) -> None: ...

class TraceInfluenceRequest(_message.Message):
    __slots__ = ("project", "model_version", "item_id", "content", "top_k")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    project: str
    model_version: str
    item_id: str
    content: _common_pb2.ItemContent
    top_k: int
    def __init__(self, project: _Optional[str] = ..., model_version: _Optional[str] = ..., item_id: _Optional[str] = ..., content: _Optional[_Union[_common_pb2.ItemContent, _Mapping]] = ..., top_k: _Optional[int] = ...) -> None: ...

class TraceInfluenceResponse(_message.Message):
    __slots__ = ("model_version", "predicted_class", "supporting", "opposing")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_CLASS_FIELD_NUMBER: _ClassVar[int]
    SUPPORTING_FIELD_NUMBER: _ClassVar[int]
    OPPOSING_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    predicted_class: str
    supporting: _containers.RepeatedCompositeFieldContainer[Influence]
    opposing: _containers.RepeatedCompositeFieldContainer[Influence]
    def __init__(self, model_version: _Optional[str] = ..., predicted_class: _Optional[str] = ..., supporting: _Optional[_Iterable[_Union[Influence, _Mapping]]] = ..., opposing: _Optional[_Iterable[_Union[Influence, _Mapping]]] = ...) -> None: ...

class DepthProfileRequest(_message.Message):
    __slots__ = ("project", "model_version")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    project: str
    model_version: str
    def __init__(self, project: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class DepthProfileResponse(_message.Message):
    __slots__ = ("model_version", "layer_groups", "profiles", "memorization_flags")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    LAYER_GROUPS_FIELD_NUMBER: _ClassVar[int]
    PROFILES_FIELD_NUMBER: _ClassVar[int]
    MEMORIZATION_FLAGS_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    layer_groups: _containers.RepeatedScalarFieldContainer[str]
    profiles: _containers.RepeatedCompositeFieldContainer[_common_pb2.DepthProfile]
    memorization_flags: _containers.RepeatedCompositeFieldContainer[_common_pb2.MemorizationFlag]
    def __init__(self, model_version: _Optional[str] = ..., layer_groups: _Optional[_Iterable[str]] = ..., profiles: _Optional[_Iterable[_Union[_common_pb2.DepthProfile, _Mapping]]] = ..., memorization_flags: _Optional[_Iterable[_Union[_common_pb2.MemorizationFlag, _Mapping]]] = ...) -> None: ...

class LedgerEntry(_message.Message):
    __slots__ = ("label_id", "item_id", "annotator_ids", "consensus_score", "layer_group", "influence", "influence_depth", "value", "magnitude")
    LABEL_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_IDS_FIELD_NUMBER: _ClassVar[int]
    CONSENSUS_SCORE_FIELD_NUMBER: _ClassVar[int]
    LAYER_GROUP_FIELD_NUMBER: _ClassVar[int]
    INFLUENCE_FIELD_NUMBER: _ClassVar[int]
    INFLUENCE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    MAGNITUDE_FIELD_NUMBER: _ClassVar[int]
    label_id: str
    item_id: str
    annotator_ids: _containers.RepeatedScalarFieldContainer[str]
    consensus_score: float
    layer_group: int
    influence: float
    influence_depth: int
    value: str
    magnitude: float
    def __init__(self, label_id: _Optional[str] = ..., item_id: _Optional[str] = ..., annotator_ids: _Optional[_Iterable[str]] = ..., consensus_score: _Optional[float] = ..., layer_group: _Optional[int] = ..., influence: _Optional[float] = ..., influence_depth: _Optional[int] = ..., value: _Optional[str] = ..., magnitude: _Optional[float] = ...) -> None: ...

class QueryLedgerRequest(_message.Message):
    __slots__ = ("project", "model_version", "annotator_id", "class_label", "layer_group", "limit")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    CLASS_LABEL_FIELD_NUMBER: _ClassVar[int]
    LAYER_GROUP_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    project: str
    model_version: str
    annotator_id: str
    class_label: str
    layer_group: int
    limit: int
    def __init__(self, project: _Optional[str] = ..., model_version: _Optional[str] = ..., annotator_id: _Optional[str] = ..., class_label: _Optional[str] = ..., layer_group: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class QueryLedgerResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LedgerEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[LedgerEntry, _Mapping]]] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("project", "limit")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    project: str
    limit: int
    def __init__(self, project: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class RunSummary(_message.Message):
    __slots__ = ("run", "n_labels", "reason")
    RUN_FIELD_NUMBER: _ClassVar[int]
    N_LABELS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    run: Run
    n_labels: int
    reason: str
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ..., n_labels: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[RunSummary]
    def __init__(self, runs: _Optional[_Iterable[_Union[RunSummary, _Mapping]]] = ...) -> None: ...

class ItemLineageRequest(_message.Message):
    __slots__ = ("project", "item_id")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    project: str
    item_id: str
    def __init__(self, project: _Optional[str] = ..., item_id: _Optional[str] = ...) -> None: ...

class RunTrace(_message.Message):
    __slots__ = ("run_id", "model_version", "finished_at", "label_id", "value", "consensus_score", "annotator_ids", "influence_depth", "influence_by_group", "layer_groups", "magnitude_by_group")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    LABEL_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CONSENSUS_SCORE_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_IDS_FIELD_NUMBER: _ClassVar[int]
    INFLUENCE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    INFLUENCE_BY_GROUP_FIELD_NUMBER: _ClassVar[int]
    LAYER_GROUPS_FIELD_NUMBER: _ClassVar[int]
    MAGNITUDE_BY_GROUP_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    model_version: str
    finished_at: _timestamp_pb2.Timestamp
    label_id: str
    value: str
    consensus_score: float
    annotator_ids: _containers.RepeatedScalarFieldContainer[str]
    influence_depth: int
    influence_by_group: _containers.RepeatedScalarFieldContainer[float]
    layer_groups: _containers.RepeatedScalarFieldContainer[str]
    magnitude_by_group: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, run_id: _Optional[str] = ..., model_version: _Optional[str] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., label_id: _Optional[str] = ..., value: _Optional[str] = ..., consensus_score: _Optional[float] = ..., annotator_ids: _Optional[_Iterable[str]] = ..., influence_depth: _Optional[int] = ..., influence_by_group: _Optional[_Iterable[float]] = ..., layer_groups: _Optional[_Iterable[str]] = ..., magnitude_by_group: _Optional[_Iterable[float]] = ...) -> None: ...

class ItemLineageResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[RunTrace]
    def __init__(self, runs: _Optional[_Iterable[_Union[RunTrace, _Mapping]]] = ...) -> None: ...

class ItemDepthsRequest(_message.Message):
    __slots__ = ("project", "item_ids")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    project: str
    item_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, project: _Optional[str] = ..., item_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ItemDepth(_message.Message):
    __slots__ = ("item_id", "run_id", "model_version", "influence_depth")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    INFLUENCE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    run_id: str
    model_version: str
    influence_depth: int
    def __init__(self, item_id: _Optional[str] = ..., run_id: _Optional[str] = ..., model_version: _Optional[str] = ..., influence_depth: _Optional[int] = ...) -> None: ...

class ItemDepthsResponse(_message.Message):
    __slots__ = ("depths",)
    DEPTHS_FIELD_NUMBER: _ClassVar[int]
    depths: _containers.RepeatedCompositeFieldContainer[ItemDepth]
    def __init__(self, depths: _Optional[_Iterable[_Union[ItemDepth, _Mapping]]] = ...) -> None: ...
