import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from strata.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Task(_message.Message):
    __slots__ = ("task_id", "item_id", "project", "content", "prelabel", "lease_expires_at", "ontology_version", "classes", "review")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    PRELABEL_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ONTOLOGY_VERSION_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    item_id: str
    project: str
    content: _common_pb2.ItemContent
    prelabel: _common_pb2.PreLabel
    lease_expires_at: _timestamp_pb2.Timestamp
    ontology_version: str
    classes: _containers.RepeatedScalarFieldContainer[str]
    review: bool
    def __init__(self, task_id: _Optional[str] = ..., item_id: _Optional[str] = ..., project: _Optional[str] = ..., content: _Optional[_Union[_common_pb2.ItemContent, _Mapping]] = ..., prelabel: _Optional[_Union[_common_pb2.PreLabel, _Mapping]] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ontology_version: _Optional[str] = ..., classes: _Optional[_Iterable[str]] = ..., review: _Optional[bool] = ...) -> None: ...

class NextTaskRequest(_message.Message):
    __slots__ = ("project", "reviews_only")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    REVIEWS_ONLY_FIELD_NUMBER: _ClassVar[int]
    project: str
    reviews_only: bool
    def __init__(self, project: _Optional[str] = ..., reviews_only: _Optional[bool] = ...) -> None: ...

class NextTaskResponse(_message.Message):
    __slots__ = ("task", "retry_after_ms")
    TASK_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    task: Task
    retry_after_ms: int
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., retry_after_ms: _Optional[int] = ...) -> None: ...

class SubmitLabelRequest(_message.Message):
    __slots__ = ("task_id", "value", "duration_ms", "client_label_id", "active_ms")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_LABEL_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_MS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    value: str
    duration_ms: int
    client_label_id: str
    active_ms: int
    def __init__(self, task_id: _Optional[str] = ..., value: _Optional[str] = ..., duration_ms: _Optional[int] = ..., client_label_id: _Optional[str] = ..., active_ms: _Optional[int] = ...) -> None: ...

class SubmitLabelResponse(_message.Message):
    __slots__ = ("label_id", "duplicate")
    LABEL_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    label_id: str
    duplicate: bool
    def __init__(self, label_id: _Optional[str] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class AmendLabelRequest(_message.Message):
    __slots__ = ("task_id", "value", "revision", "active_ms")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_MS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    value: str
    revision: int
    active_ms: int
    def __init__(self, task_id: _Optional[str] = ..., value: _Optional[str] = ..., revision: _Optional[int] = ..., active_ms: _Optional[int] = ...) -> None: ...

class AmendLabelResponse(_message.Message):
    __slots__ = ("label_id", "revision", "duplicate")
    LABEL_ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    label_id: str
    revision: int
    duplicate: bool
    def __init__(self, label_id: _Optional[str] = ..., revision: _Optional[int] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class SkipTaskRequest(_message.Message):
    __slots__ = ("task_id", "reason")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    reason: str
    def __init__(self, task_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SkipTaskResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetContractRequest(_message.Message):
    __slots__ = ("project", "version")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    project: str
    version: str
    def __init__(self, project: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class GetContractResponse(_message.Message):
    __slots__ = ("contract",)
    CONTRACT_FIELD_NUMBER: _ClassVar[int]
    contract: _common_pb2.LabelingContract
    def __init__(self, contract: _Optional[_Union[_common_pb2.LabelingContract, _Mapping]] = ...) -> None: ...

class LoadContractRequest(_message.Message):
    __slots__ = ("document",)
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    document: str
    def __init__(self, document: _Optional[str] = ...) -> None: ...

class LoadContractResponse(_message.Message):
    __slots__ = ("project", "version")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    project: str
    version: str
    def __init__(self, project: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class CreateAnnotatorRequest(_message.Message):
    __slots__ = ("annotator_id", "display_name", "role", "project")
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    annotator_id: str
    display_name: str
    role: _common_pb2.Role
    project: str
    def __init__(self, annotator_id: _Optional[str] = ..., display_name: _Optional[str] = ..., role: _Optional[_Union[_common_pb2.Role, str]] = ..., project: _Optional[str] = ...) -> None: ...

class CreateAnnotatorResponse(_message.Message):
    __slots__ = ("annotator_id",)
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    annotator_id: str
    def __init__(self, annotator_id: _Optional[str] = ...) -> None: ...

class IssueTokenRequest(_message.Message):
    __slots__ = ("annotator_id", "ttl_seconds")
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    annotator_id: str
    ttl_seconds: int
    def __init__(self, annotator_id: _Optional[str] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class IssueTokenResponse(_message.Message):
    __slots__ = ("token", "expires_at")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    token: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, token: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RevokeTokensRequest(_message.Message):
    __slots__ = ("annotator_id",)
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    annotator_id: str
    def __init__(self, annotator_id: _Optional[str] = ...) -> None: ...

class RevokeTokensResponse(_message.Message):
    __slots__ = ("revoked",)
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    revoked: int
    def __init__(self, revoked: _Optional[int] = ...) -> None: ...

class AnnotatorInfo(_message.Message):
    __slots__ = ("annotator_id", "display_name", "role", "status", "labels_submitted", "status_reason", "admin", "projects")
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LABELS_SUBMITTED_FIELD_NUMBER: _ClassVar[int]
    STATUS_REASON_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    annotator_id: str
    display_name: str
    role: _common_pb2.Role
    status: _common_pb2.AnnotatorStatus
    labels_submitted: int
    status_reason: str
    admin: bool
    projects: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, annotator_id: _Optional[str] = ..., display_name: _Optional[str] = ..., role: _Optional[_Union[_common_pb2.Role, str]] = ..., status: _Optional[_Union[_common_pb2.AnnotatorStatus, str]] = ..., labels_submitted: _Optional[int] = ..., status_reason: _Optional[str] = ..., admin: _Optional[bool] = ..., projects: _Optional[_Iterable[str]] = ...) -> None: ...

class ListAnnotatorsRequest(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: str
    def __init__(self, project: _Optional[str] = ...) -> None: ...

class ListAnnotatorsResponse(_message.Message):
    __slots__ = ("annotators",)
    ANNOTATORS_FIELD_NUMBER: _ClassVar[int]
    annotators: _containers.RepeatedCompositeFieldContainer[AnnotatorInfo]
    def __init__(self, annotators: _Optional[_Iterable[_Union[AnnotatorInfo, _Mapping]]] = ...) -> None: ...

class SetAnnotatorStatusRequest(_message.Message):
    __slots__ = ("annotator_id", "status", "reason", "project")
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    annotator_id: str
    status: _common_pb2.AnnotatorStatus
    reason: str
    project: str
    def __init__(self, annotator_id: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.AnnotatorStatus, str]] = ..., reason: _Optional[str] = ..., project: _Optional[str] = ...) -> None: ...

class SetAnnotatorStatusResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class QueueStatsRequest(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: str
    def __init__(self, project: _Optional[str] = ...) -> None: ...

class QueueStatsResponse(_message.Message):
    __slots__ = ("ready", "leased", "completed", "gold_tasks", "review_tasks", "labels_total", "labels_last_hour", "oldest_lease_at", "oldest_lease_annotator", "items_by_state")
    class ItemsByStateEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    READY_FIELD_NUMBER: _ClassVar[int]
    LEASED_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    GOLD_TASKS_FIELD_NUMBER: _ClassVar[int]
    REVIEW_TASKS_FIELD_NUMBER: _ClassVar[int]
    LABELS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    LABELS_LAST_HOUR_FIELD_NUMBER: _ClassVar[int]
    OLDEST_LEASE_AT_FIELD_NUMBER: _ClassVar[int]
    OLDEST_LEASE_ANNOTATOR_FIELD_NUMBER: _ClassVar[int]
    ITEMS_BY_STATE_FIELD_NUMBER: _ClassVar[int]
    ready: int
    leased: int
    completed: int
    gold_tasks: int
    review_tasks: int
    labels_total: int
    labels_last_hour: int
    oldest_lease_at: _timestamp_pb2.Timestamp
    oldest_lease_annotator: str
    items_by_state: _containers.ScalarMap[str, int]
    def __init__(self, ready: _Optional[int] = ..., leased: _Optional[int] = ..., completed: _Optional[int] = ..., gold_tasks: _Optional[int] = ..., review_tasks: _Optional[int] = ..., labels_total: _Optional[int] = ..., labels_last_hour: _Optional[int] = ..., oldest_lease_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., oldest_lease_annotator: _Optional[str] = ..., items_by_state: _Optional[_Mapping[str, int]] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: str
    def __init__(self, project: _Optional[str] = ...) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("annotator_id", "role", "status", "admin", "member", "status_reason", "token_expires_at")
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    STATUS_REASON_FIELD_NUMBER: _ClassVar[int]
    TOKEN_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    annotator_id: str
    role: _common_pb2.Role
    status: _common_pb2.AnnotatorStatus
    admin: bool
    member: bool
    status_reason: str
    token_expires_at: _timestamp_pb2.Timestamp
    def __init__(self, annotator_id: _Optional[str] = ..., role: _Optional[_Union[_common_pb2.Role, str]] = ..., status: _Optional[_Union[_common_pb2.AnnotatorStatus, str]] = ..., admin: _Optional[bool] = ..., member: _Optional[bool] = ..., status_reason: _Optional[str] = ..., token_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AddMemberRequest(_message.Message):
    __slots__ = ("project", "annotator_id", "role")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    project: str
    annotator_id: str
    role: _common_pb2.Role
    def __init__(self, project: _Optional[str] = ..., annotator_id: _Optional[str] = ..., role: _Optional[_Union[_common_pb2.Role, str]] = ...) -> None: ...

class AddMemberResponse(_message.Message):
    __slots__ = ("created",)
    CREATED_FIELD_NUMBER: _ClassVar[int]
    created: bool
    def __init__(self, created: _Optional[bool] = ...) -> None: ...

class RemoveMemberRequest(_message.Message):
    __slots__ = ("project", "annotator_id")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    project: str
    annotator_id: str
    def __init__(self, project: _Optional[str] = ..., annotator_id: _Optional[str] = ...) -> None: ...

class RemoveMemberResponse(_message.Message):
    __slots__ = ("released_tasks",)
    RELEASED_TASKS_FIELD_NUMBER: _ClassVar[int]
    released_tasks: int
    def __init__(self, released_tasks: _Optional[int] = ...) -> None: ...

class ProjectInfo(_message.Message):
    __slots__ = ("project", "role", "status", "contract_version")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CONTRACT_VERSION_FIELD_NUMBER: _ClassVar[int]
    project: str
    role: _common_pb2.Role
    status: _common_pb2.AnnotatorStatus
    contract_version: str
    def __init__(self, project: _Optional[str] = ..., role: _Optional[_Union[_common_pb2.Role, str]] = ..., status: _Optional[_Union[_common_pb2.AnnotatorStatus, str]] = ..., contract_version: _Optional[str] = ...) -> None: ...

class ListProjectsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListProjectsResponse(_message.Message):
    __slots__ = ("projects",)
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    projects: _containers.RepeatedCompositeFieldContainer[ProjectInfo]
    def __init__(self, projects: _Optional[_Iterable[_Union[ProjectInfo, _Mapping]]] = ...) -> None: ...

class RenewTokenRequest(_message.Message):
    __slots__ = ("ttl_seconds",)
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ttl_seconds: int
    def __init__(self, ttl_seconds: _Optional[int] = ...) -> None: ...

class RenewTokenResponse(_message.Message):
    __slots__ = ("token", "expires_at")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    token: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, token: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("id", "at", "service", "actor", "actor_kind", "source", "rpc", "project", "action", "target", "outcome", "code", "reason", "detail_json")
    ID_FIELD_NUMBER: _ClassVar[int]
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
    id: int
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
    def __init__(self, id: _Optional[int] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., service: _Optional[str] = ..., actor: _Optional[str] = ..., actor_kind: _Optional[str] = ..., source: _Optional[str] = ..., rpc: _Optional[str] = ..., project: _Optional[str] = ..., action: _Optional[str] = ..., target: _Optional[str] = ..., outcome: _Optional[str] = ..., code: _Optional[str] = ..., reason: _Optional[str] = ..., detail_json: _Optional[str] = ...) -> None: ...

class ListAuditRequest(_message.Message):
    __slots__ = ("project", "actor", "action", "outcome", "service", "since", "until", "limit", "before_id")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_ID_FIELD_NUMBER: _ClassVar[int]
    project: str
    actor: str
    action: str
    outcome: str
    service: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    limit: int
    before_id: int
    def __init__(self, project: _Optional[str] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., outcome: _Optional[str] = ..., service: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limit: _Optional[int] = ..., before_id: _Optional[int] = ...) -> None: ...

class ListAuditResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ...) -> None: ...

class StartSessionRequest(_message.Message):
    __slots__ = ("ttl_seconds",)
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ttl_seconds: int
    def __init__(self, ttl_seconds: _Optional[int] = ...) -> None: ...

class StartSessionResponse(_message.Message):
    __slots__ = ("session_token", "expires_at", "annotator_id", "admin")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    expires_at: _timestamp_pb2.Timestamp
    annotator_id: str
    admin: bool
    def __init__(self, session_token: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., annotator_id: _Optional[str] = ..., admin: _Optional[bool] = ...) -> None: ...

class EndSessionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EndSessionResponse(_message.Message):
    __slots__ = ("revoked",)
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    revoked: bool
    def __init__(self, revoked: _Optional[bool] = ...) -> None: ...

class CreateSignInLinkRequest(_message.Message):
    __slots__ = ("project", "annotator_id", "ttl_seconds")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    project: str
    annotator_id: str
    ttl_seconds: int
    def __init__(self, project: _Optional[str] = ..., annotator_id: _Optional[str] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class CreateSignInLinkResponse(_message.Message):
    __slots__ = ("code", "expires_at")
    CODE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    code: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, code: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RedeemSignInLinkRequest(_message.Message):
    __slots__ = ("code", "ttl_seconds")
    CODE_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    code: str
    ttl_seconds: int
    def __init__(self, code: _Optional[str] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class RedeemSignInLinkResponse(_message.Message):
    __slots__ = ("session_token", "expires_at", "annotator_id", "admin")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    expires_at: _timestamp_pb2.Timestamp
    annotator_id: str
    admin: bool
    def __init__(self, session_token: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., annotator_id: _Optional[str] = ..., admin: _Optional[bool] = ...) -> None: ...

class ListContractsRequest(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: str
    def __init__(self, project: _Optional[str] = ...) -> None: ...

class ContractVersion(_message.Message):
    __slots__ = ("version", "digest", "loaded_at", "loaded_by", "document", "current")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    LOADED_BY_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    version: str
    digest: str
    loaded_at: _timestamp_pb2.Timestamp
    loaded_by: str
    document: str
    current: bool
    def __init__(self, version: _Optional[str] = ..., digest: _Optional[str] = ..., loaded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., loaded_by: _Optional[str] = ..., document: _Optional[str] = ..., current: _Optional[bool] = ...) -> None: ...

class ListContractsResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[ContractVersion]
    def __init__(self, versions: _Optional[_Iterable[_Union[ContractVersion, _Mapping]]] = ...) -> None: ...
