from strata.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImportRow(_message.Message):
    __slots__ = ("line", "external_id", "content", "metadata", "gold_answer")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LINE_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    GOLD_ANSWER_FIELD_NUMBER: _ClassVar[int]
    line: int
    external_id: str
    content: _common_pb2.ItemContent
    metadata: _containers.ScalarMap[str, str]
    gold_answer: str
    def __init__(self, line: _Optional[int] = ..., external_id: _Optional[str] = ..., content: _Optional[_Union[_common_pb2.ItemContent, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., gold_answer: _Optional[str] = ...) -> None: ...

class ImportItemsRequest(_message.Message):
    __slots__ = ("project", "rows")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    project: str
    rows: _containers.RepeatedCompositeFieldContainer[ImportRow]
    def __init__(self, project: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[ImportRow, _Mapping]]] = ...) -> None: ...

class RowError(_message.Message):
    __slots__ = ("line", "message")
    LINE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    line: int
    message: str
    def __init__(self, line: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ImportItemsResponse(_message.Message):
    __slots__ = ("received", "imported", "exact_duplicates", "near_duplicates", "gold", "rejected", "errors")
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    IMPORTED_FIELD_NUMBER: _ClassVar[int]
    EXACT_DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    NEAR_DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    GOLD_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    received: int
    imported: int
    exact_duplicates: int
    near_duplicates: int
    gold: int
    rejected: int
    errors: _containers.RepeatedCompositeFieldContainer[RowError]
    def __init__(self, received: _Optional[int] = ..., imported: _Optional[int] = ..., exact_duplicates: _Optional[int] = ..., near_duplicates: _Optional[int] = ..., gold: _Optional[int] = ..., rejected: _Optional[int] = ..., errors: _Optional[_Iterable[_Union[RowError, _Mapping]]] = ...) -> None: ...

class NextBatchRequest(_message.Message):
    __slots__ = ("project", "size", "requester", "lease_seconds")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    project: str
    size: int
    requester: str
    lease_seconds: int
    def __init__(self, project: _Optional[str] = ..., size: _Optional[int] = ..., requester: _Optional[str] = ..., lease_seconds: _Optional[int] = ...) -> None: ...

class BatchItem(_message.Message):
    __slots__ = ("item", "routing")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    item: _common_pb2.Item
    routing: _common_pb2.RoutingMetadata
    def __init__(self, item: _Optional[_Union[_common_pb2.Item, _Mapping]] = ..., routing: _Optional[_Union[_common_pb2.RoutingMetadata, _Mapping]] = ...) -> None: ...

class NextBatchResponse(_message.Message):
    __slots__ = ("items", "batch_id", "cold_start", "model_version", "pool_left")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    COLD_START_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    POOL_LEFT_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[BatchItem]
    batch_id: str
    cold_start: bool
    model_version: str
    pool_left: int
    def __init__(self, items: _Optional[_Iterable[_Union[BatchItem, _Mapping]]] = ..., batch_id: _Optional[str] = ..., cold_start: _Optional[bool] = ..., model_version: _Optional[str] = ..., pool_left: _Optional[int] = ...) -> None: ...

class PoolStatsRequest(_message.Message):
    __slots__ = ("project", "counts_only")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    COUNTS_ONLY_FIELD_NUMBER: _ClassVar[int]
    project: str
    counts_only: bool
    def __init__(self, project: _Optional[str] = ..., counts_only: _Optional[bool] = ...) -> None: ...

class ScoreHistogram(_message.Message):
    __slots__ = ("upper_bounds", "counts")
    UPPER_BOUNDS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    upper_bounds: _containers.RepeatedScalarFieldContainer[float]
    counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, upper_bounds: _Optional[_Iterable[float]] = ..., counts: _Optional[_Iterable[int]] = ...) -> None: ...

class PoolStatsResponse(_message.Message):
    __slots__ = ("items_by_state", "exact_duplicates", "near_duplicates", "score_distribution", "class_estimates", "model_version", "consensus_since_training")
    class ItemsByStateEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ITEMS_BY_STATE_FIELD_NUMBER: _ClassVar[int]
    EXACT_DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    NEAR_DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    SCORE_DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    CLASS_ESTIMATES_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONSENSUS_SINCE_TRAINING_FIELD_NUMBER: _ClassVar[int]
    items_by_state: _containers.ScalarMap[str, int]
    exact_duplicates: int
    near_duplicates: int
    score_distribution: ScoreHistogram
    class_estimates: _containers.RepeatedCompositeFieldContainer[_common_pb2.ClassScore]
    model_version: str
    consensus_since_training: int
    def __init__(self, items_by_state: _Optional[_Mapping[str, int]] = ..., exact_duplicates: _Optional[int] = ..., near_duplicates: _Optional[int] = ..., score_distribution: _Optional[_Union[ScoreHistogram, _Mapping]] = ..., class_estimates: _Optional[_Iterable[_Union[_common_pb2.ClassScore, _Mapping]]] = ..., model_version: _Optional[str] = ..., consensus_since_training: _Optional[int] = ...) -> None: ...
