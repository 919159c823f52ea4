"""The AnnotationGateway gRPC servicer: the annotators' RPCs and contracts.

The guard (strata.common.authz) has authenticated the caller and checked the matrix
before a method runs; the people and membership RPCs live in `admin_rpcs`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from strata.common.audit import AuditEntry
from strata.common.authz import Guard, action_entry, current_caller
from strata.common.config import ConfigError
from strata.common.contracts import ContractCache
from strata.common.db import Database
from strata.common.grpcserver import abort
from strata.gateway import amend, people, stats, store
from strata.gateway.admin_rpcs import PeopleRpcs
from strata.gateway.auth import Authenticator
from strata.gateway.contract import ContractError, class_names, parse_contract
from strata.gateway.gold_prelabels import PoolAgreement
from strata.gateway.metrics import GatewayMetrics
from strata.gateway.policy import (
    Candidate,
    Membership,
    Reject,
    ShownProfile,
    agreement_rate,
    check_value,
    choose_unit,
    gold_prelabel,
    gold_rate_for,
    not_found,
    roll_gold,
)
from strata.gateway.refill import Refiller
from strata.gateway.sessions import SessionRpcs
from strata.gateway.submit import Rejected, Submission, SubmitBatcher
from strata.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

log = logging.getLogger(__name__)

# Refusals of these codes are access decisions (a task that is not yours, a block), audited.
ACCESS_CODES = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED)


def _task_uuid(task_id: str) -> str | None:
    try:
        return str(uuid.UUID(task_id))
    except ValueError:
        return None


# The audit log's actor for contracts loaded from STRATA_GATEWAY_CONTRACTS_DIR.
CONTRACTS_DIR_ACTOR = "system:contracts-dir"


def load_contract_document(
    db: Database, document: str, entry: AuditEntry
) -> tuple[common_pb2.LabelingContract, bool]:
    """Parse, store and audit a contract; (contract, False) when that exact text was
    already loaded. ContractError: invalid; store.ContractConflict: the version exists
    with other content."""
    contract = parse_contract(document)
    with db.transaction() as conn:
        created = store.save_contract(conn, contract, document, entry.actor)
        people.audit(
            conn,
            replace(
                entry,
                project=contract.project,
                target=f"{contract.project}@{contract.version}",
                detail={"created": created, "classes": len(contract.classes)},
            ),
        )
    return contract, created


def load_contract_files(db: Database, folder: Path) -> list[str]:
    """Load every contract file of `folder` (sorted by name); one line per file. A file
    that is invalid or conflicts with a loaded version is a ConfigError naming the file."""
    loaded = []
    paths = sorted(p for p in folder.iterdir() if p.suffix in {".yaml", ".yml", ".json"})
    for path in paths:
        entry = AuditEntry(
            service="gateway",
            action="load_contract",
            actor=CONTRACTS_DIR_ACTOR,
            actor_kind="system",
        )
        try:
            contract, created = load_contract_document(db, path.read_text(), entry)
        except (ContractError, store.ContractConflict) as exc:
            raise ConfigError("STRATA_GATEWAY_CONTRACTS_DIR", f"{path}: {exc}") from exc
        what = "loaded" if created else "already loaded"
        loaded.append(f"{path.name}: {contract.project} {contract.version} {what}")
    return loaded


class GatewayServicer(PeopleRpcs, SessionRpcs, gateway_pb2_grpc.AnnotationGatewayServicer):
    def __init__(
        self,
        db: Database,
        auth: Authenticator,
        guard: Guard,
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
        self.guard = guard
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
        self.pool_agreement = PoolAgreement(db)

    def _contract(self, context: grpc.ServicerContext, project: str) -> common_pb2.LabelingContract:
        if not project:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "project is required")
        contract = self.contracts.current(project)
        if contract is None:
            abort(context, grpc.StatusCode.NOT_FOUND, no_project(project))
        return contract

    # -- annotator RPCs ----------------------------------------------------------

    def NextTask(
        self, request: gateway_pb2.NextTaskRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.NextTaskResponse:
        caller = current_caller()
        if request.reviews_only and not caller.at_least("reviewer"):
            self.guard.refuse_current(
                grpc.StatusCode.PERMISSION_DENIED,
                f"reviews need the reviewer role in project {request.project}; "
                f"{caller.name} is {caller.role}",
                request.project,
            )
        contract = self._contract(context, request.project)
        member = Membership(caller.role or "manager", caller.status, caller.status_reason)
        lease_s = contract.lease_seconds or self.default_lease_s
        show = self._show_prelabel(contract, self.pool_agreement.profiles(request.project))
        with self.db.transaction() as conn:
            taken = (
                store.tasks_taken(conn, request.project, caller.name, contract.gold_probation_tasks)
                if contract.gold_probation_tasks
                else 0
            )
            with self._rng_lock:
                gold_roll = roll_gold(self._rng, gold_rate_for(contract, taken))
            regular, gold, review = store.find_candidates(
                conn, request.project, caller.name, member.reviews
            )
            chosen = (
                review
                if request.reviews_only
                else choose_unit(
                    member, regular=regular, gold=gold, review=review, gold_roll=gold_roll
                )
            )
            leased = None
            if chosen is not None:
                leased = store.lease(
                    conn,
                    chosen,
                    regular,
                    request.project,
                    caller.name,
                    contract.version,
                    lease_s,
                    show,
                )
        if regular is None:
            self.refiller.kick(request.project)
        elif leased is not None and chosen is not None and chosen.kind == "label":
            self.refiller.taken(request.project)
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

    def _show_prelabel(
        self, contract: common_pb2.LabelingContract, profiles: list[ShownProfile]
    ) -> store.ShowPrelabel:
        """What a task of this contract shows: a pool task its item's newest prediction; a
        gold task what the pool task it replaces would have shown, right as often as pool
        pre-labels of that confidence are (`profiles`), a honeypot now and then."""
        classes = class_names(contract)

        def show(
            candidate: Candidate, item: store.ItemPrelabel
        ) -> tuple[common_pb2.PreLabel | None, bool]:
            if contract.hide_prelabels:
                return None, False
            if candidate.kind != "gold":
                return item.prelabel, False
            replaced = item.replaced
            right = agreement_rate(profiles, replaced.confidence) if replaced else 0.0
            with self._rng_lock:
                return gold_prelabel(
                    replaced,
                    right,
                    item.gold_answer or "",
                    item.prelabel.value if item.prelabel else None,
                    item.runner_up,
                    classes,
                    contract.gold_honeypot_rate,
                    self._rng,
                )

        return show

    def _refuse_submission(self, code: grpc.StatusCode, message: str) -> None:
        if code in ACCESS_CODES:
            self.guard.refuse_current(code, message)
        self.guard.checked()

    def SubmitLabel(
        self, request: gateway_pb2.SubmitLabelRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.SubmitLabelResponse:
        started = time.perf_counter()
        principal = self.auth.principal(context.invocation_metadata(), self.clock())
        problem = check_value(
            request.value, request.duration_ms, self.max_value_bytes, request.active_ms
        )
        if problem is not None:
            self.metrics.labels_submitted.labels(project="", outcome=problem.code.name).inc()
            self.guard.checked()
            abort(context, problem.code, problem.message)
        task_id = _task_uuid(request.task_id)
        if task_id is None:
            reject = not_found(request.task_id[:64])
            self.metrics.labels_submitted.labels(project="", outcome=reject.code.name).inc()
            self._refuse_submission(reject.code, reject.message)
            abort(context, reject.code, reject.message)
        if len(request.client_label_id) > 128:
            self.guard.checked()
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
                    active_ms=request.active_ms,
                    # Without a client key the task itself makes a retry idempotent.
                    client_label_id=request.client_label_id or f"task:{task_id}",
                )
            )
        except Rejected as exc:
            self.metrics.labels_submitted.labels(project="", outcome=exc.code.name).inc()
            self._refuse_submission(exc.code, exc.message)
            abort(context, exc.code, exc.message)
        self.guard.checked()
        outcome = "duplicate" if result.duplicate else "accepted"
        self.metrics.labels_submitted.labels(project=result.project, outcome=outcome).inc()
        self.metrics.submit_seconds.observe(time.perf_counter() - started)
        return gateway_pb2.SubmitLabelResponse(label_id=result.label_id, duplicate=result.duplicate)

    def AmendLabel(
        self, request: gateway_pb2.AmendLabelRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.AmendLabelResponse:
        principal = self.auth.principal(context.invocation_metadata(), self.clock())
        problem = check_value(request.value, 0, self.max_value_bytes, request.active_ms)
        if problem is not None:
            self.guard.checked()
            abort(context, problem.code, problem.message)
        task_id = _task_uuid(request.task_id)
        if task_id is None:
            reject = not_found(request.task_id[:64])
            self._refuse_submission(reject.code, reject.message)
            abort(context, reject.code, reject.message)
        with self.db.transaction() as conn:
            now, ctx, label = amend.read_for_amend(conn, task_id)
            contract = (
                self.contracts.version(ctx.project, ctx.snapshot.ontology_version) if ctx else None
            )
            decision = amend.check_amendment(
                ctx,
                label,
                principal,
                request.value,
                request.revision,
                class_names(contract) if contract else [],
                now,
                task_id=task_id,
            )
            if isinstance(decision, Reject):
                # Refused inside the transaction: nothing it did is kept.
                self._refuse_submission(decision.code, decision.message)
                abort(context, decision.code, decision.message)
            assert ctx is not None and label is not None
            revision = label.revision
            if not (decision.duplicate or decision.unchanged):
                revision = amend.amend(
                    conn, ctx, label, principal, request.value, request.active_ms, now
                )
        self.guard.checked()
        outcome = (
            "duplicate" if decision.duplicate else "unchanged" if decision.unchanged else "amended"
        )
        self.metrics.labels_amended.labels(project=ctx.project, outcome=outcome).inc()
        return gateway_pb2.AmendLabelResponse(
            label_id=label.label_id, revision=revision, duplicate=decision.duplicate
        )

    def SkipTask(
        self, request: gateway_pb2.SkipTaskRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.SkipTaskResponse:
        principal = self.auth.principal(context.invocation_metadata(), self.clock())
        task_id = _task_uuid(request.task_id)
        if task_id is None:
            self.guard.refuse_current(
                grpc.StatusCode.NOT_FOUND, not_found(request.task_id[:64]).message
            )
        with self.db.transaction() as conn:
            skipped = store.skip_task(conn, task_id, principal.annotator_id, request.reason)
            member = principal.membership(skipped[1]) if skipped else None
            if skipped is None or member is None:
                # Refused inside the transaction: nothing it did is kept.
                self.guard.refuse_current(grpc.StatusCode.NOT_FOUND, not_found(task_id).message)
        self.guard.checked()
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

    # -- contracts ----------------------------------------------------------------

    def LoadContract(
        self, request: gateway_pb2.LoadContractRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.LoadContractResponse:
        try:
            parsed = parse_contract(request.document)
        except ContractError as exc:
            self.guard.checked()
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"invalid contract: {exc}")
        caller = current_caller()
        if self.contracts.current(parsed.project) is None and not caller.admin:
            # Only an admin creates a project; to anyone else it does not exist yet.
            self.guard.refuse_current(
                grpc.StatusCode.NOT_FOUND,
                no_project(parsed.project),
                parsed.project,
                reason="only an admin creates a project",
            )
        self.guard.require(parsed.project, "manager", no_project(parsed.project))
        try:
            contract, _ = load_contract_document(
                self.db, request.document, action_entry("gateway", "load_contract")
            )
        except ContractError as exc:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"invalid contract: {exc}")
        except store.ContractConflict as exc:
            abort(context, grpc.StatusCode.ALREADY_EXISTS, str(exc))
        self.contracts.invalidate(contract.project)
        self.refiller.kick()
        return gateway_pb2.LoadContractResponse(project=contract.project, version=contract.version)

    def ListContracts(
        self, request: gateway_pb2.ListContractsRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.ListContractsResponse:
        self._contract(context, request.project)
        with self.db.transaction() as conn:
            rows = stats.contract_versions(conn, request.project)
        reply = gateway_pb2.ListContractsResponse()
        for i, row in enumerate(rows):
            version = reply.versions.add(
                version=row.version,
                digest=row.digest,
                loaded_by=row.loaded_by,
                document=row.document,
                current=i == 0,
            )
            version.loaded_at.FromDatetime(row.loaded_at)
        return reply

    def QueueStats(
        self, request: gateway_pb2.QueueStatsRequest, context: grpc.ServicerContext
    ) -> gateway_pb2.QueueStatsResponse:
        self._contract(context, request.project)
        with self.db.transaction() as conn:
            counts = stats.queue_counts(conn, request.project)
        reply = gateway_pb2.QueueStatsResponse(
            ready=counts.ready,
            leased=counts.leased,
            completed=counts.completed,
            gold_tasks=counts.gold_tasks,
            review_tasks=counts.review_tasks,
            labels_total=counts.labels_total,
            labels_last_hour=counts.labels_last_hour,
            oldest_lease_annotator=counts.oldest_lease_annotator,
            items_by_state=counts.items_by_state,
        )
        if counts.oldest_lease_at is not None:
            reply.oldest_lease_at.FromDatetime(counts.oldest_lease_at)
        return reply


def no_project(project: str) -> str:
    """What a caller hears about a project that does not exist, or is not theirs."""
    return f"no project {project!r}: an admin creates a project by loading its contract"


def lookup_principal(db: Database) -> Callable[[str], Any]:
    """The Authenticator's look-up, reading the tokens table."""

    def lookup(token_hash: str) -> Any:
        with db.transaction() as conn:
            return people.lookup_token(conn, token_hash)

    return lookup
