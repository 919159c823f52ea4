"""A labeling campaign run for real through the stack's services (the demo's main loop).

The campaign loads a contract for scikit-learn's digits, imports a pool (and a
small gold set) through the sampler, and lets a simulated crowd work through the
gateway over gRPC with their own tokens, concurrently, at a pace set by each
annotator's speed. Everything else happens inside the services: quality decides
consensus, asks for more annotators and reviews and blocks spammers; the
sampler asks for training every `retrain_every` consensus labels; training
trains on Ray and publishes; inference serves the new version and re-scores the
pool; the sampler re-ranks. The campaign watches (labels, model versions, test
accuracy on a split nobody labels, blocked annotators) and stops at the label
budget or the target accuracy.

Some wrong labels are meant to reach training, so that the report can measure what
training says about them: the crowd's ring of corruptors wins consensus on some of
the items it holds together, and a few planted twins (near-copies of pool images,
apart enough that the sampler keeps both) are misread as their look-alike class by
everyone. The twins and their originals come in a first import with gold, so that
they are labelled before the rest of the pool arrives.

The data and its twins are `strata.demo.split`'s; the settings and what the campaign
records, `strata.demo.results`'.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

import grpc
import numpy as np
from numpy.typing import NDArray

from strata.common.channels import with_metadata
from strata.common.tls import TlsConfig, open_channel
from strata.demo.crowd import Annotator, digits_crowd, lookalike, ring_answer
from strata.demo.results import (
    CampaignResult,
    CampaignSettings,
    CurvePoint,
    Submitted,
    Tick,
    TwinPair,
)
from strata.demo.split import digits_split, features
from strata.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    inference_pb2,
    inference_pb2_grpc,
    quality_pb2,
    quality_pb2_grpc,
    sampler_pb2,
    sampler_pb2_grpc,
    training_pb2,
    training_pb2_grpc,
)

CLASSES = [str(d) for d in range(10)]


def contract_document(s: CampaignSettings) -> str:
    classes = ", ".join(f"'{c}'" for c in CLASSES)
    return (
        f"project: {s.project}\nversion: v1\nclasses: [{classes}]\n"
        f"overlap: {{min: {s.overlap_min}, max: {s.overlap_max}}}\n"
        "consensus_threshold: 0.9\n"
        f"gold: {{rate: {s.gold_rate}, accuracy_threshold: 0.7, "
        "probation: {tasks: 12, rate: 0.5}, "
        f"honeypot_rate: {s.honeypot_rate}, max_anchoring: 0.5}}\n"
        f"active_learning: {{retrain_every: {s.retrain_every}, batch_size: {s.batch_size}, "
        f"strategy: {s.strategy}}}\n"
        f"budget: {{labels: {s.label_budget}, target_accuracy: {s.target_accuracy}}}\n"
    )


Metadata = list[tuple[str, str]]


def bearer(token: str) -> Metadata:
    return [("authorization", f"Bearer {token}")]


class Campaign:
    """One project's campaign. The admin sets it up and watches it; each annotator of the
    crowd is a member of this project only, and works with a token of their own."""

    def __init__(
        self,
        addresses: dict[str, str],
        admin_token: str,
        settings: CampaignSettings,
        crowd: list[Annotator] | None = None,
        tls: TlsConfig | None = None,
    ) -> None:
        self.s = settings
        self.crowd = crowd or digits_crowd()
        self.admin = bearer(admin_token)
        tls = tls or TlsConfig("plaintext")
        self._channels = {name: open_channel(a, tls) for name, a in addresses.items()}
        self.gateway = gateway_pb2_grpc.AnnotationGatewayStub(self._channels["gateway"])
        # What the campaign itself asks of these services, it asks as the admin.
        as_admin = {
            name: with_metadata(self._channels[name], self.admin)
            for name in ("sampler", "inference", "training")
        }
        self.sampler = sampler_pb2_grpc.SamplerStub(as_admin["sampler"])
        self.inference = inference_pb2_grpc.InferenceStub(as_admin["inference"])
        self.training = training_pb2_grpc.TrainingStub(as_admin["training"])
        self.quality = quality_pb2_grpc.QualityStub(self._channels["quality"])
        self.split = digits_split(settings.pool, settings.gold, settings.seed, settings.twins)
        sp = self.split
        self._truth = {sp.x[i].tobytes(): int(sp.y[i]) for i in range(len(sp.y))}
        # Everyone takes a twin for its look-alike: its label comes out wrong.
        self._misread = {
            sp.x[t].tobytes(): lookalike(int(sp.y[t]), len(CLASSES)) for t in sp.twins.tolist()
        }
        self._gold = {sp.x[i].tobytes() for i in sp.gold.tolist()}
        self._item_ids: dict[bytes, str] = {}  # content -> item id, as tasks show them
        self._counts = {a.annotator_id: 0 for a in self.crowd}
        self._submitted: list[Submitted] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._errors: list[str] = []
        self._last_tick: Tick | None = None

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    # -- set-up ---------------------------------------------------------------------------------

    def setup(self) -> tuple[dict[str, int], dict[str, str]]:
        """Load the contract, enrol the crowd, import gold and the pool (only the twins and
        their originals when there are twins: `import_rest` brings the others); returns
        import counts and each annotator's token."""
        self.gateway.LoadContract(
            gateway_pb2.LoadContractRequest(document=contract_document(self.s)), metadata=self.admin
        )
        tokens = {}
        for a in self.crowd:
            role = common_pb2.ROLE_REVIEWER if a.reviewer else common_pb2.ROLE_ANNOTATOR
            try:
                self.gateway.CreateAnnotator(
                    gateway_pb2.CreateAnnotatorRequest(
                        annotator_id=a.annotator_id,
                        role=role,  # type: ignore[arg-type]
                        project=self.s.project,
                    ),
                    metadata=self.admin,
                )
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise
                self.gateway.AddMember(
                    gateway_pb2.AddMemberRequest(
                        project=self.s.project,
                        annotator_id=a.annotator_id,
                        role=role,  # type: ignore[arg-type]
                    ),
                    metadata=self.admin,
                )
            tokens[a.annotator_id] = self.gateway.IssueToken(
                gateway_pb2.IssueTokenRequest(annotator_id=a.annotator_id), metadata=self.admin
            ).token
        sp = self.split
        first = sp.pairs if sp.twins.size else sp.pool
        return self._import(np.concatenate([first, sp.gold])), tokens

    def import_rest(self) -> dict[str, int]:
        """The pool items the first import left out (none without twins)."""
        if not self.split.twins.size:
            return {}
        return self._import(np.setdiff1d(self.split.pool, self.split.pairs))

    def _import(self, indices: NDArray[np.int64]) -> dict[str, int]:
        sp = self.split
        gold = set(sp.gold.tolist())
        rows = [
            sampler_pb2.ImportRow(
                line=n + 1,
                external_id=f"digit-{i}",
                content=features(sp.x[i]),
                gold_answer=str(sp.y[i]) if i in gold else "",
            )
            for n, i in enumerate(indices.tolist())
        ]
        reply = self.sampler.ImportItems(
            iter([sampler_pb2.ImportItemsRequest(project=self.s.project, rows=rows)]), timeout=300
        )
        return {
            "received": reply.received,
            "imported": reply.imported,
            "gold": reply.gold,
            "exact_duplicates": reply.exact_duplicates,
            "near_duplicates": reply.near_duplicates,
            "rejected": reply.rejected,
        }

    def _await_pairs(self, timeout_s: float) -> None:
        """Until the crowd has been handed every twin and original (or `timeout_s` passed),
        so that they are labelled whatever the sampler would rank first."""
        wanted = {self.split.x[i].tobytes() for i in self.split.pairs.tolist()}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._stop.is_set():
            with self._lock:
                if wanted <= self._item_ids.keys():
                    return
            self._stop.wait(0.5)

    def twin_pairs(self) -> list[TwinPair]:
        sp = self.split
        with self._lock:
            ids = dict(self._item_ids)
        return [
            TwinPair(
                ids.get(sp.x[o].tobytes(), ""),
                ids.get(sp.x[t].tobytes(), ""),
                int(sp.y[o]),
                self._misread[sp.x[t].tobytes()],
            )
            for o, t in zip(sp.originals.tolist(), sp.twins.tolist(), strict=True)
        ]

    # -- the crowd --------------------------------------------------------------------------------

    def _take(self, annotator_id: str, md: Metadata) -> tuple[gateway_pb2.Task | None, float]:
        """The annotator's next task, or None and how long to wait (negative: stop, the
        budget is spent; a task taken then is given back)."""
        reply = self.gateway.NextTask(
            gateway_pb2.NextTaskRequest(project=self.s.project), metadata=md, timeout=10
        )
        if not reply.HasField("task"):
            if self.human_labels() >= self.s.label_budget:
                return None, -1.0  # nothing to give back, nothing more to label
            return None, max(0.05, reply.retry_after_ms / 1000.0)
        if self.human_labels() >= self.s.label_budget:
            self.gateway.SkipTask(
                gateway_pb2.SkipTaskRequest(task_id=reply.task.task_id, reason="budget"),
                metadata=md,
            )
            return None, -1.0
        return reply.task, 0.0

    def _read(self, task: gateway_pb2.Task) -> tuple[int, int, int | None, bool]:
        """The task's true class, the class people see in it (a twin's look-alike), the
        pre-label it shows and whether it is gold."""
        content = np.asarray(task.content.features.values, dtype=np.float32).tobytes()
        truth = self._truth[content]
        with self._lock:
            self._item_ids.setdefault(content, task.item_id)
        shown = task.prelabel.value if task.HasField("prelabel") else ""
        prelabel = CLASSES.index(shown) if shown in CLASSES else None
        return truth, self._misread.get(content, truth), prelabel, content in self._gold

    def _submit(
        self,
        annotator: Annotator,
        md: Metadata,
        task: gateway_pb2.Task,
        answer: int,
        truth: int,
        prelabel: int | None,
    ) -> None:
        self.gateway.SubmitLabel(
            gateway_pb2.SubmitLabelRequest(
                task_id=task.task_id,
                value=CLASSES[answer],
                duration_ms=int(annotator.seconds_per_label * 1000),
                client_label_id=f"{annotator.annotator_id}:{task.task_id}",
            ),
            metadata=md,
            timeout=10,
        )
        with self._lock:
            self._counts[annotator.annotator_id] += 1
            self._submitted.append(
                Submitted(
                    time.time(), annotator.annotator_id, task.item_id, answer, truth, prelabel
                )
            )

    def _goes_on(self, annotator_id: str, exc: grpc.RpcError) -> bool:
        """False when the annotator was blocked (quality caught them); any other error but
        a lease given away is recorded."""
        if exc.code() == grpc.StatusCode.PERMISSION_DENIED:
            return False
        if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:  # a lease given away
            with self._lock:
                self._errors.append(f"{annotator_id}: {exc.code().name}")
        return True

    def _work(self, annotator: Annotator, token: str, seed: int) -> None:
        rng = np.random.default_rng(seed)
        md = bearer(token)
        while not self._stop.is_set():
            try:
                task, wait = self._take(annotator.annotator_id, md)
                if task is None:
                    if wait < 0:
                        return
                    self._stop.wait(wait)
                    continue
                truth, seen, prelabel, _ = self._read(task)
                answer = annotator.answer(seen, rng, prelabel)
                self._stop.wait(annotator.seconds_per_label * self.s.pace)
                self._submit(annotator, md, task, answer, truth, prelabel)
            except grpc.RpcError as exc:
                if not self._goes_on(annotator.annotator_id, exc):
                    return
                self._stop.wait(0.5)

    def _work_ring(self, ring: Sequence[Annotator], tokens: dict[str, str], seed: int) -> None:
        """The ring takes its tasks together, each member right after the other, so that
        two of them fill both slots of the item at the head of the queue; on the items
        they hold together they answer alike (`ring_answer`), elsewhere honestly."""
        rng = np.random.default_rng(seed)
        members = list(ring)
        while members and not self._stop.is_set():
            held: list[tuple[Annotator, Metadata, gateway_pb2.Task]] = []
            spent, wait = False, 0.5
            for member in list(members):
                md = bearer(tokens[member.annotator_id])
                try:
                    task, pause = self._take(member.annotator_id, md)
                except grpc.RpcError as exc:
                    if not self._goes_on(member.annotator_id, exc):
                        members.remove(member)
                    continue
                if task is not None:
                    held.append((member, md, task))
                elif pause < 0:
                    spent = True
                else:
                    wait = min(wait, pause)
            if not held:
                if spent:
                    return
                self._stop.wait(wait)
                continue
            together = Counter(task.item_id for _, _, task in held)
            answers = []
            for member, _, task in held:
                truth, seen, prelabel, gold = self._read(task)
                answer = ring_answer(
                    member,
                    truth,
                    seen,
                    rng,
                    item_id=task.item_id,
                    held_by_ring=together[task.item_id],
                    gold=gold,
                    k=len(CLASSES),
                    prelabel=prelabel,
                )
                answers.append((answer, truth, prelabel))
            self._stop.wait(max(m.seconds_per_label for m, _, _ in held) * self.s.pace)
            for (member, md, task), (answer, truth, prelabel) in zip(held, answers, strict=True):
                try:
                    self._submit(member, md, task, answer, truth, prelabel)
                except grpc.RpcError as exc:
                    if not self._goes_on(member.annotator_id, exc):
                        members.remove(member)

    def human_labels(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    # -- watching -------------------------------------------------------------------------------

    def measure(self, began: float) -> CurvePoint | None:
        """The serving version's accuracy on the test split, placed on the curve at the
        human labels spent when its run read its training set; None while this replica
        does not serve the version the serving table names yet."""
        try:
            info = self.inference.ModelInfo(
                inference_pb2.ModelInfoRequest(project=self.s.project), timeout=10
            )
        except grpc.RpcError:
            return None
        if not info.model_version:
            return None
        test = self.split.test
        predicted: list[int] = []
        for start in range(0, len(test), 1000):  # Predict takes up to 1,024 items a call
            try:
                reply = self.inference.Predict(
                    inference_pb2.PredictRequest(
                        project=self.s.project,
                        contents=[features(self.split.x[i]) for i in test[start : start + 1000]],
                    ),
                    timeout=30,
                )
            except grpc.RpcError as exc:
                if exc.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAVAILABLE):
                    return None  # published, not yet swapped in here: next tick
                raise
            if reply.model_version != info.model_version:
                return None  # a swap between the calls: next tick
            predicted.extend(int(p.predicted_class) for p in reply.predictions)
        spent = self.human_labels()
        if info.run_id:
            run = self.training.GetRun(training_pb2.GetRunRequest(run_id=info.run_id)).run
            started = run.started_at.ToNanoseconds() / 1e9 if run.HasField("started_at") else 0.0
            with self._lock:
                spent = sum(1 for x in self._submitted if x.at <= started) if started else spent
        return CurvePoint(
            model_version=info.model_version,
            human_labels=spent,
            test_accuracy=float((np.asarray(predicted) == self.split.y[test]).mean()),
            gold_accuracy=info.metrics.accuracy,
            seconds=time.monotonic() - began,
            labels_when_served=self.human_labels(),
            run_id=info.run_id,
        )

    def blocked(self) -> dict[str, str]:
        reply = self.gateway.ListAnnotators(
            gateway_pb2.ListAnnotatorsRequest(project=self.s.project), metadata=self.admin
        )
        return {
            a.annotator_id: a.status_reason
            for a in reply.annotators
            if a.status == common_pb2.ANNOTATOR_STATUS_BLOCKED
        }

    def _tick(self, curve: list[CurvePoint], began: float, slow: bool) -> Tick:
        """A snapshot for the progress line; `slow` also asks for agreement and blocking."""
        try:
            stats = self.sampler.PoolStats(
                sampler_pb2.PoolStatsRequest(project=self.s.project), timeout=5
            )
            consensus = int(stats.items_by_state.get("labeled", 0))
        except grpc.RpcError:
            consensus = self._last_tick.consensus if self._last_tick else 0
        alpha, blocked = (
            (self._last_tick.alpha, self._last_tick.blocked) if self._last_tick else (None, ())
        )
        if slow:
            try:
                agreement = self.quality.AgreementReport(
                    quality_pb2.AgreementReportRequest(project=self.s.project),
                    metadata=self.admin,
                    timeout=10,
                )
                if agreement.overall.items:
                    alpha = agreement.overall.krippendorff_alpha
                blocked = tuple(sorted(self.blocked()))
            except grpc.RpcError:
                pass
        self._last_tick = Tick(
            project=self.s.project,
            strategy=self.s.strategy,
            labels=self.human_labels(),
            budget=self.s.label_budget,
            consensus=consensus,
            model=curve[-1].model_version if curve else "",
            accuracy=curve[-1].test_accuracy if curve else 0.0,
            alpha=alpha,
            blocked=blocked,
            seconds=time.monotonic() - began,
        )
        return self._last_tick

    def run(self, on_tick: Callable[[Tick], None] = lambda tick: None) -> CampaignResult:
        began = time.monotonic()
        imported, tokens = self.setup()
        seeds = {a.annotator_id: self.s.seed * 100 + i for i, a in enumerate(self.crowd)}
        ring = [a for a in self.crowd if a.ring_share > 0]
        workers = [
            threading.Thread(
                target=self._work,
                args=(a, tokens[a.annotator_id], seeds[a.annotator_id]),
                daemon=True,
            )
            for a in self.crowd
            if a.ring_share == 0
        ]
        if ring:
            workers.append(
                threading.Thread(
                    target=self._work_ring,
                    args=(ring, tokens, seeds[ring[0].annotator_id]),
                    daemon=True,
                )
            )
        for w in workers:
            w.start()
        if self.split.twins.size:
            self._await_pairs(self.s.pairs_wait_seconds)
            rest = self.import_rest()
            imported = {k: v + rest.get(k, 0) for k, v in imported.items()}
        curve: list[CurvePoint] = []
        stopped = "time limit"
        ticks = 0
        try:
            while time.monotonic() - began < self.s.max_seconds:
                self._stop.wait(2.0)
                version = self._serving_version()
                if version and (not curve or curve[-1].model_version != version):
                    point = self.measure(began)
                    if point is not None and point.model_version == version:
                        curve.append(point)
                ticks += 1
                on_tick(self._tick(curve, began, slow=ticks % 5 == 1))
                if (
                    self.s.stop_at_target
                    and curve
                    and curve[-1].test_accuracy >= self.s.target_accuracy
                ):
                    stopped = "target accuracy"
                    break
                if self.human_labels() >= self.s.label_budget and not any(
                    w.is_alive() for w in workers
                ):
                    stopped = "label budget"
                    break
            if stopped == "label budget":
                self._final_model(curve, began)
        finally:
            self._stop.set()
            for w in workers:
                w.join(timeout=15)
        return CampaignResult(
            settings=self.s,
            imported=imported,
            labels_by_annotator=dict(self._counts),
            curve=curve,
            blocked=self.blocked(),
            stopped_because=stopped,
            seconds=time.monotonic() - began,
            errors=list(self._errors),
            submitted=list(self._submitted),
            twins=self.twin_pairs(),
            features={
                item: np.frombuffer(content, dtype=np.float32).tolist()
                for content, item in self._item_ids.items()
            },
        )

    def _final_model(self, curve: list[CurvePoint], began: float, wait_s: float = 180.0) -> None:
        """The budget is spent: train once more on every label and measure that model."""
        run = self.training.StartRun(
            training_pb2.StartRunRequest(project=self.s.project, reason="campaign: budget spent")
        )
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            state = self.training.GetRun(training_pb2.GetRunRequest(run_id=run.run_id)).run
            if state.state == training_pb2.RUN_STATE_FAILED:
                self._errors.append(f"final run failed: {state.error}")
                return
            if state.state == training_pb2.RUN_STATE_SUCCEEDED and (
                self._serving_version() == state.model_version
            ):
                point = self.measure(began)
                if point is not None and point.model_version == state.model_version:
                    curve.append(point)
                    return
            time.sleep(1.0)
        self._errors.append("the final model was not served in time")

    def _serving_version(self) -> str:
        try:
            return self.inference.ModelInfo(
                inference_pb2.ModelInfoRequest(project=self.s.project), timeout=10
            ).model_version
        except grpc.RpcError:
            return ""
