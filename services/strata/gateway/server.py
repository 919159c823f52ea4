"""The AnnotationGateway gRPC servicer: authenticate, validate, call, map errors."""

from __future__ import annotations

import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc

from strata.common.config import ConfigError
from strata.common.contracts import ContractCache
from strata.common.db import Database
from strata.common.grpcserver import abort
from strata.gateway import store
from strata.gateway.auth import Authenticator, AuthError, hash_token, new_token
from strata.gateway.contract import ContractError, class_names, parse_contract
from strata.gateway.metrics import GatewayMetrics
from strata.gateway.policy import (
    ROLE_ENUM,
    ROLES,
    STATUS_ENUM,
    STATUSES,
    Principal,
    check_value,
    choose_unit,
    gold_rate_for,
    not_found,
    roll_gold,
)
from strata.gateway.refill import Refiller
from strata.gateway.submit import Rejected, Submission, SubmitBatcher
from strata.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

log = logging.getLogger(__name__)

_ANNOTATOR_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MAX_TOKEN_TTL_S = 366 * 86_400
DEFAULT_TOKEN_TTL_S = 30 * 86_400


def _task_uuid(task_id: str) -> str | None:
    try:
        return str(uuid.UUID(task_id))
    except ValueError:
        return None


# The audit log's actor for contracts loaded from STRATA_GATEWAY_CONTRACTS_DIR.
CONTRACTS_DIR_ACTOR = "system:contracts-dir"


def load_contract_document(
    db: Database, document: str, actor: str
) -> tuple[common_pb2.LabelingContract, bool]:
    """Parse, store and audit a contract; (contract, False) when that exact text was
    already loaded. ContractError: invalid; store.ContractConflict: the version exists
    with other content."""
    contract = parse_contract(document)
    with db.transaction() as conn:
        created = store.save_contract(conn, contract, document, actor)
        store.audit(
            conn,
            actor,
            "load_contract",
            f"{contract.project}@{contract.version}",
            created=created,
            classes=len(contract.classes),
        )
    return contract, created


def load_contract_files(db: Database, folder: Path) -> list[str]:
    """Load every contract file of `folder` (sorted by name); one line per file. A file
    that is invalid or conflicts with a loaded version is a ConfigError naming the file."""
    loaded = []
    paths = sorted(p for p in folder.iterdir() if p.suffix in {".yaml", ".yml", ".json"})
    for path in paths:
        try:
            contract, created = load_contract_document(db, path.read_text(), CONTRACTS_DIR_ACTOR)
        except (ContractError, store.ContractConflict) as exc:
            raise ConfigError("STRATA_GATEWAY_CONTRACTS_DIR", f"{path}: {exc}") from exc
        what = "loaded" if created else "already loaded"
        loaded.append(f"{path.name}: {contract.project} {contract.version} {what}")
    return loaded


class GatewayServicer(gateway_pb2_grpc.AnnotationGatewayServicer):
    def __init__(
        self,
        db: Database,
        auth: Authenticator,
        contracts: ContractCache,
        batcher: SubmitBatcher,
        refiller: Refiller,
        metrics: GatewayMetrics,
        *,
        default_lease_s: int,
        max_value_bytes: int,
        retry_after_ms: int,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.auth = auth
        self.contracts = contracts
        self.batcher = batcher
        self.refiller = refiller
        self.metrics = metrics
        self.default_lease_s = default_lease_s
        self.max_value_bytes = max_value_bytes
        self.retry_after_ms = retry_after_ms
        self._rng = rng or random.SystemRandom()
        self._rng_lock = threading.Lock()
        self.clock = clock

    # -- auth helpers ------------------------------------------------------

    def _principal(self, context: grpc.ServicerContext) -> Principal:
        try:
            return self.auth.principal(context.invocation_metadata(), self.clock())
        except AuthError as exc:
            abort(context, grpc.StatusCode.UNAUTHENTICATED, str(exc))

    def _admin(self, context: grpc.ServicerContext) -> Principal:
        principal = self._principal(context)
        if not principal.is_admin:
            abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"this call needs the admin role; {principal.annotator_id} is {principal.role}",
            )
        return principal

    def _contract(self, context: grpc.ServicerContext, project: str) -> common_pb2.LabelingContract:
        if not project:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "project is required")
        contract = self.contracts.current(project)
        if contract is None:
            abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"no project {project!r}: an admin must load its contract first (LoadContract)",
            )
        return contract

    # -- annotator RPCs ----------------------------------------------------------

    def NextTask(
        self, request: gateway_pb2.NextTaskRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.NextTaskResponse:
        principal = self._principal(context)
        contract = self._contract(context, request.project)
        if principal.status == "blocked":
            reason = f" ({principal.status_reason})" if principal.status_reason else ""
            abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"annotator {principal.annotator_id} is blocked{reason}; ask a project admin",
            )
        lease_s = contract.lease_seconds or self.default_lease_s
        with self.db.transaction() as conn:
            taken = (
                store.tasks_taken(
                    conn, request.project, principal.annotator_id, contract.gold_probation_tasks
                )
                if contract.gold_probation_tasks
                else 0
            )
            with self._rng_lock:
                gold_roll = roll_gold(self._rng, gold_rate_for(contract, taken))
            regular, gold, review = store.find_candidates(
                conn, request.project, principal.annotator_id, principal.reviews
            )
            chosen = choose_unit(
                principal, regular=regular, gold=gold, review=review, gold_roll=gold_roll
            )
            leased = None
            if chosen is not None:
                leased = store.lease(
                    conn,
                    chosen,
                    request.project,
                    principal.annotator_id,
                    contract.version,
                    lease_s,
                    show_prelabel=not contract.hide_prelabels,
                )
        if regular is None:
            self.refiller.kick()
        if chosen is None or leased is None:
            return gateway_pb2.NextTaskResponse(retry_after_ms=self.retry_after_ms)
        self.metrics.tasks_assigned.labels(project=request.project, kind=chosen.kind).inc()
        task = gateway_pb2.Task(
            task_id=leased.task_id,
            item_id=leased.item_id,
            project=request.project,
            content=common_pb2.ItemContent.FromString(leased.content),
            ontology_version=contract.version,
            classes=class_names(contract),
            review=chosen.kind == "review",
        )
        if leased.prelabel is not None:
            task.prelabel.CopyFrom(leased.prelabel)
        task.lease_expires_at.FromDatetime(leased.lease_expires_at)
        return gateway_pb2.NextTaskResponse(task=task)

    def SubmitLabel(
        self, request: gateway_pb2.SubmitLabelRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.SubmitLabelResponse:
        started = time.perf_counter()
        principal = self._principal(context)
        problem = check_value(request.value, request.duration_ms, self.max_value_bytes)
        if problem is not None:
            self.metrics.labels_submitted.labels(project="", outcome=problem.code.name).inc()
            abort(context, problem.code, problem.message)
        task_id = _task_uuid(request.task_id)
        if task_id is None:
            reject = not_found(request.task_id[:64])
            self.metrics.labels_submitted.labels(project="", outcome=reject.code.name).inc()
            abort(context, reject.code, reject.message)
        if len(request.client_label_id) > 128:
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "client_label_id is longer than 128 characters",
            )
        try:
            result = self.batcher.submit(
                Submission(
                    principal=principal,
                    task_id=task_id,
                    value=request.value,
                    duration_ms=request.duration_ms,
                    # Without a client key the task itself makes a retry idempotent.
                    client_label_id=request.client_label_id or f"task:{task_id}",
                )
            )
        except Rejected as exc:
            self.metrics.labels_submitted.labels(project="", outcome=exc.code.name).inc()
            abort(context, exc.code, exc.message)
        outcome = "duplicate" if result.duplicate else "accepted"
        self.metrics.labels_submitted.labels(project=result.project, outcome=outcome).inc()
        self.metrics.submit_seconds.observe(time.perf_counter() - started)
        return gateway_pb2.SubmitLabelResponse(label_id=result.label_id, duplicate=result.duplicate)

    def SkipTask(
        self, request: gateway_pb2.SkipTaskRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.SkipTaskResponse:
        principal = self._principal(context)
        task_id = _task_uuid(request.task_id)
        if task_id is None:
            abort(context, grpc.StatusCode.NOT_FOUND, not_found(request.task_id[:64]).message)
        with self.db.transaction() as conn:
            skipped = store.skip_task(conn, task_id, principal.annotator_id, request.reason)
        if skipped is None:
            abort(context, grpc.StatusCode.NOT_FOUND, not_found(task_id).message)
        previous, project = skipped
        if previous != "leased":
            abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"task {task_id} is {previous}, not leased to you, so it cannot be skipped",
            )
        self.metrics.tasks_skipped.labels(project=project).inc()
        return gateway_pb2.SkipTaskResponse()

    def GetContract(
        self, request: gateway_pb2.GetContractRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.GetContractResponse:
        self._principal(context)
        if not request.version:
            return gateway_pb2.GetContractResponse(
                contract=self._contract(context, request.project)
            )
        contract = self.contracts.version(request.project, request.version)
        if contract is None:
            abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"project {request.project!r} has no contract version {request.version!r}",
            )
        return gateway_pb2.GetContractResponse(contract=contract)

    # -- admin RPCs -------------------------------------------------------------

    def LoadContract(
        self, request: gateway_pb2.LoadContractRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.LoadContractResponse:
        admin = self._admin(context)
        try:
            contract, _ = load_contract_document(self.db, request.document, admin.annotator_id)
        except ContractError as exc:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"invalid contract: {exc}")
        except store.ContractConflict as exc:
            abort(context, grpc.StatusCode.ALREADY_EXISTS, str(exc))
        self.contracts.invalidate(contract.project)
        self.refiller.kick()
        return gateway_pb2.LoadContractResponse(project=contract.project, version=contract.version)

    def CreateAnnotator(
        self, request: gateway_pb2.CreateAnnotatorRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.CreateAnnotatorResponse:
        admin = self._admin(context)
        if not _ANNOTATOR_ID.match(request.annotator_id):
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "annotator_id must be 1-64 letters, digits or '_.@-', starting with a letter "
                "or digit",
            )
        role = ROLES.get(request.role)
        if role is None:
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "role is required: ROLE_ANNOTATOR, ROLE_REVIEWER or ROLE_ADMIN",
            )
        with self.db.transaction() as conn:
            try:
                store.create_annotator(conn, request.annotator_id, request.display_name[:200], role)
            except store.AnnotatorExists:
                abort(
                    context,
                    grpc.StatusCode.ALREADY_EXISTS,
                    f"annotator {request.annotator_id!r} already exists",
                )
            store.audit(
                conn, admin.annotator_id, "create_annotator", request.annotator_id, role=role
            )
        return gateway_pb2.CreateAnnotatorResponse(annotator_id=request.annotator_id)

    def IssueToken(
        self, request: gateway_pb2.IssueTokenRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.IssueTokenResponse:
        admin = self._admin(context)
        ttl = request.ttl_seconds or DEFAULT_TOKEN_TTL_S
        if not 60 <= ttl <= MAX_TOKEN_TTL_S:
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"ttl_seconds must be between 60 and {MAX_TOKEN_TTL_S}, got {ttl}",
            )
        token = new_token()
        expires_at = self.clock() + timedelta(seconds=ttl)
        with self.db.transaction() as conn:
            if not store.annotator_exists(conn, request.annotator_id):
                abort(
                    context,
                    grpc.StatusCode.NOT_FOUND,
                    f"no annotator {request.annotator_id!r}: create it first (CreateAnnotator)",
                )
            store.insert_token(conn, request.annotator_id, hash_token(token), expires_at)
            store.audit(
                conn, admin.annotator_id, "issue_token", request.annotator_id, ttl_seconds=ttl
            )
        response = gateway_pb2.IssueTokenResponse(token=token)
        response.expires_at.FromDatetime(expires_at)
        return response

    def RevokeTokens(
        self, request: gateway_pb2.RevokeTokensRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.RevokeTokensResponse:
        admin = self._admin(context)
        with self.db.transaction() as conn:
            if not store.annotator_exists(conn, request.annotator_id):
                abort(context, grpc.StatusCode.NOT_FOUND, f"no annotator {request.annotator_id!r}")
            revoked = store.revoke_tokens(conn, request.annotator_id)
            store.audit(
                conn, admin.annotator_id, "revoke_tokens", request.annotator_id, revoked=revoked
            )
        self.auth.forget(request.annotator_id)
        return gateway_pb2.RevokeTokensResponse(revoked=revoked)

    def ListAnnotators(
        self, request: gateway_pb2.ListAnnotatorsRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.ListAnnotatorsResponse:
        self._admin(context)
        with self.db.transaction() as conn:
            rows = store.list_annotators(conn, request.project)
        return gateway_pb2.ListAnnotatorsResponse(
            annotators=[
                gateway_pb2.AnnotatorInfo(
                    annotator_id=r.annotator_id,
                    display_name=r.display_name,
                    role=ROLE_ENUM[r.role],
                    status=STATUS_ENUM[r.status],
                    labels_submitted=r.labels_submitted,
                    status_reason=r.status_reason,
                )
                for r in rows
            ]
        )

    def WhoAmI(
        self, request: gateway_pb2.WhoAmIRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.WhoAmIResponse:
        principal = self._principal(context)
        return gateway_pb2.WhoAmIResponse(
            annotator_id=principal.annotator_id,
            role=ROLE_ENUM[principal.role],
            status=STATUS_ENUM[principal.status],
        )

    def SetAnnotatorStatus(
        self, request: gateway_pb2.SetAnnotatorStatusRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.SetAnnotatorStatusResponse:
        admin = self._admin(context)
        status = STATUSES.get(request.status)
        if status is None:
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "status is required: ANNOTATOR_STATUS_ACTIVE, _RETRAIN or _BLOCKED",
            )
        with self.db.transaction() as conn:
            if not store.set_status(conn, request.annotator_id, status, request.reason[:500]):
                abort(context, grpc.StatusCode.NOT_FOUND, f"no annotator {request.annotator_id!r}")
            store.audit(
                conn,
                admin.annotator_id,
                "set_status",
                request.annotator_id,
                status=status,
                reason=request.reason[:500],
            )
        self.auth.forget(request.annotator_id)
        return gateway_pb2.SetAnnotatorStatusResponse()

    def QueueStats(
        self, request: gateway_pb2.QueueStatsRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.QueueStatsResponse:
        self._admin(context)
        self._contract(context, request.project)
        with self.db.transaction() as conn:
            counts = store.queue_counts(conn, request.project)
        return gateway_pb2.QueueStatsResponse(
            ready=counts.ready,
            leased=counts.leased,
            completed=counts.completed,
            gold_tasks=counts.gold_tasks,
            review_tasks=counts.review_tasks,
            labels_total=counts.labels_total,
        )


def lookup_principal(db: Database) -> Callable[[str], Any]:
    """The Authenticator's look-up, reading the tokens table."""

    def lookup(token_hash: str) -> Any:
        with db.transaction() as conn:
            return store.lookup_token(conn, token_hash)

    return lookup
