import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from strata.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PredictRequest(_message.Message):
    __slots__ = ("project", "item_ids", "contents", "include_embedding", "mc_samples")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    CONTENTS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    MC_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    project: str
    item_ids: _containers.RepeatedScalarFieldContainer[str]
    contents: _containers.RepeatedCompositeFieldContainer[_common_pb2.ItemContent]
    include_embedding: bool
    mc_samples: int
    def __init__(self, project: _Optional[str] = ..., item_ids: _Optional[_Iterable[str]] = ..., contents: _Optional[_Iterable[_Union[_common_pb2.ItemContent, _Mapping]]] = ..., include_embedding: _Optional[bool] = ..., mc_samples: _Optional[int] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("predictions", "model_version")
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    predictions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Prediction]
    model_version: str
    def __init__(self, predictions: _Optional[_Iterable[_Union[_common_pb2.Prediction, _Mapping]]] = ..., model_version: _Optional[str] = ...) -> None: ...

class CalibrationInfo(_message.Message):
    __slots__ = ("calibrated", "temperature", "ece_before", "ece_after", "n_gold", "note")
    CALIBRATED_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    ECE_BEFORE_FIELD_NUMBER: _ClassVar[int]
    ECE_AFTER_FIELD_NUMBER: _ClassVar[int]
    N_GOLD_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    calibrated: bool
    temperature: float
    ece_before: float
    ece_after: float
    n_gold: int
    note: str
    def __init__(self, calibrated: _Optional[bool] = ..., temperature: _Optional[float] = ..., ece_before: _Optional[float] = ..., ece_after: _Optional[float] = ..., n_gold: _Optional[int] = ..., note: _Optional[str] = ...) -> None: ...

class AutoAcceptStatus(_message.Message):
    __slots__ = ("active", "confidence_threshold", "precision_at_threshold", "spot_check_rate", "auto_accepted", "reason", "min_precision", "spot_checked")
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PRECISION_AT_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SPOT_CHECK_RATE_FIELD_NUMBER: _ClassVar[int]
    AUTO_ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MIN_PRECISION_FIELD_NUMBER: _ClassVar[int]
    SPOT_CHECKED_FIELD_NUMBER: _ClassVar[int]
    active: bool
    confidence_threshold: float
    precision_at_threshold: float
    spot_check_rate: float
    auto_accepted: int
    reason: str
    min_precision: float
    spot_checked: int
    def __init__(self, active: _Optional[bool] = ..., confidence_threshold: _Optional[float] = ..., precision_at_threshold: _Optional[float] = ..., spot_check_rate: _Optional[float] = ..., auto_accepted: _Optional[int] = ..., reason: _Optional[str] = ..., min_precision: _Optional[float] = ..., spot_checked: _Optional[int] = ...) -> None: ...

class ModelInfoRequest(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: str
    def __init__(self, project: _Optional[str] = ...) -> None: ...

class ModelInfoResponse(_message.Message):
    __slots__ = ("model_version", "family", "metrics", "calibration", "previous_version", "loaded_at", "auto_accept", "last_failure", "scoring_backlog", "run_id")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    AUTO_ACCEPT_FIELD_NUMBER: _ClassVar[int]
    LAST_FAILURE_FIELD_NUMBER: _ClassVar[int]
    SCORING_BACKLOG_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    family: str
    metrics: _common_pb2.ModelMetrics
    calibration: CalibrationInfo
    previous_version: str
    loaded_at: _timestamp_pb2.Timestamp
    auto_accept: AutoAcceptStatus
    last_failure: str
    scoring_backlog: int
    run_id: str
    def __init__(self, model_version: _Optional[str] = ..., family: _Optional[str] = ..., metrics: _Optional[_Union[_common_pb2.ModelMetrics, _Mapping]] = ..., calibration: _Optional[_Union[CalibrationInfo, _Mapping]] = ..., previous_version: _Optional[str] = ..., loaded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., auto_accept: _Optional[_Union[AutoAcceptStatus, _Mapping]] = ..., last_failure: _Optional[str] = ..., scoring_backlog: _Optional[int] = ..., run_id: _Optional[str] = ...) -> None: ...

class RollbackModelRequest(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: str
    def __init__(self, project: _Optional[str] = ...) -> None: ...

class RollbackModelResponse(_message.Message):
    __slots__ = ("model_version",)
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    def __init__(self, model_version: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: str
    def __init__(self, project: _Optional[str] = ...) -> None: ...

class ModelVersionInfo(_message.Message):
    __slots__ = ("model_version", "run_id", "family", "metrics", "gold_accuracy", "n_gold", "calibrated", "ece_before", "ece_after", "status", "error", "serving", "published_at", "recorded_at")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    GOLD_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    N_GOLD_FIELD_NUMBER: _ClassVar[int]
    CALIBRATED_FIELD_NUMBER: _ClassVar[int]
    ECE_BEFORE_FIELD_NUMBER: _ClassVar[int]
    ECE_AFTER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    run_id: str
    family: str
    metrics: _common_pb2.ModelMetrics
    gold_accuracy: float
    n_gold: int
    calibrated: bool
    ece_before: float
    ece_after: float
    status: str
    error: str
    serving: bool
    published_at: _timestamp_pb2.Timestamp
    recorded_at: _timestamp_pb2.Timestamp
    def __init__(self, model_version: _Optional[str] = ..., run_id: _Optional[str] = ..., family: _Optional[str] = ..., metrics: _Optional[_Union[_common_pb2.ModelMetrics, _Mapping]] = ..., gold_accuracy: _Optional[float] = ..., n_gold: _Optional[int] = ..., calibrated: _Optional[bool] = ..., ece_before: _Optional[float] = ..., ece_after: _Optional[float] = ..., status: _Optional[str] = ..., error: _Optional[str] = ..., serving: _Optional[bool] = ..., published_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., recorded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelVersionInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelVersionInfo, _Mapping]]] = ...) -> None: ...

class ImportedPrediction(_message.Message):
    __slots__ = ("line", "item", "value", "confidence", "probabilities")
    class ProbabilitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    LINE_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    line: int
    item: str
    value: str
    confidence: float
    probabilities: _containers.ScalarMap[str, float]
    def __init__(self, line: _Optional[int] = ..., item: _Optional[str] = ..., value: _Optional[str] = ..., confidence: _Optional[float] = ..., probabilities: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ImportPredictionsRequest(_message.Message):
    __slots__ = ("project", "model", "rows")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    project: str
    model: str
    rows: _containers.RepeatedCompositeFieldContainer[ImportedPrediction]
    def __init__(self, project: _Optional[str] = ..., model: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[ImportedPrediction, _Mapping]]] = ...) -> None: ...

class ImportPredictionError(_message.Message):
    __slots__ = ("line", "message")
    LINE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    line: int
    message: str
    def __init__(self, line: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ImportPredictionsResponse(_message.Message):
    __slots__ = ("received", "imported", "already", "rejected", "errors")
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    IMPORTED_FIELD_NUMBER: _ClassVar[int]
    ALREADY_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    received: int
    imported: int
    already: int
    rejected: int
    errors: _containers.RepeatedCompositeFieldContainer[ImportPredictionError]
    def __init__(self, received: _Optional[int] = ..., imported: _Optional[int] = ..., already: _Optional[int] = ..., rejected: _Optional[int] = ..., errors: _Optional[_Iterable[_Union[ImportPredictionError, _Mapping]]] = ...) -> None: ...
