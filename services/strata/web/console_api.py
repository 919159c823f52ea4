"""The console's /api routes: progress, agreement (by class and between annotators, with
the items a pair disagreed on), model versions, contract versions (export and import),
and the governance chain of an item. The pages render the same data (insight.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from strata.web import insight
from strata.web.api import ERRORS, Me
from strata.web.backends import BackendError, Backends
from strata.web.manage import QueueOut


def name() -> Any:
    """An annotator id, item id or version in a path (no slash, no control character);
    a fresh Path each time, since FastAPI binds one to the parameter it first meets."""
    return Path(min_length=1, max_length=200, pattern=r"^[^/\x00-\x1f]+$")


class ProgressCountsOut(BaseModel):
    imported: int
    queued: int
    labeled: int
    accepted: int
    in_review: int
    labelled_by_model: int
    gold: int
    duplicates: int


class BucketOut(BaseModel):
    start: str | None
    human_labels: int
    model_labels: int
    decided: int
    reviews_opened: int
    reviews_resolved: int


class ProgressOut(BaseModel):
    queue: QueueOut
    counts: ProgressCountsOut
    open_reviews: int
    human_labels_last_hour: int
    bucket_seconds: int
    buckets: list[BucketOut]


class ClassAgreementOut(BaseModel):
    class_label: str
    alpha: float | None
    fleiss_kappa: float | None
    items: int


class PairOut(BaseModel):
    a: str
    b: str
    shared_items: int
    agreed: int
    cohen_kappa: float | None = Field(description="Cohen's kappa; null when undefined")


class OverallOut(BaseModel):
    alpha: float | None
    fleiss_kappa: float | None
    mean_cohen_kappa: float | None
    items: int


class AgreementOut(BaseModel):
    metric: str
    threshold: float
    done: bool
    overall: OverallOut
    by_class: list[ClassAgreementOut]
    annotators: list[str]
    pairs: list[PairOut]


class DisagreementOut(BaseModel):
    item_id: str
    value_a: str
    value_b: str
    consensus_value: str
    state: str


class DisagreementsOut(BaseModel):
    a: str
    b: str
    total: int
    items: list[DisagreementOut]


class ContestedOut(BaseModel):
    item_id: str
    values: list[str] = Field(description="each person's latest answer, sorted")
    consensus_value: str
    state: str


class ContestedItemsOut(BaseModel):
    class_label: str
    total: int
    items: list[ContestedOut]


class ModelVersionOut(BaseModel):
    model_version: str
    run_id: str
    family: str
    labels: int | None
    gold_accuracy: float | None = Field(
        description="on the project's gold items, held out of training (Strata's test set)"
    )
    n_gold: int
    ece_before: float | None
    ece_after: float | None
    calibrated: bool
    status: str
    error: str
    serving: bool
    published_at: str | None


class RunOut(BaseModel):
    run_id: str
    state: str
    model_version: str
    labels: int
    reason: str
    started_at: str | None
    finished_at: str | None
    error: str


class ModelsOut(BaseModel):
    serving: str | None
    versions: list[ModelVersionOut]
    runs: list[RunOut]


class ContractOut(BaseModel):
    version: str
    digest: str
    loaded_at: str | None
    loaded_by: str
    current: bool


class ContractIn(BaseModel):
    document: str = Field(
        min_length=1, max_length=1_000_000, description="the contract as YAML or JSON text"
    )


class ContractLoadedOut(BaseModel):
    project: str
    version: str


class GroupOut(BaseModel):
    name: str
    influence: float
    share: float


class RunTraceOut(BaseModel):
    run_id: str
    model_version: str
    finished_at: str | None
    label_id: str
    value: str
    consensus_score: float | None
    annotator_ids: list[str]
    influence_depth: int
    groups: list[GroupOut]


class InfluenceOut(BaseModel):
    label_id: str
    item_id: str
    annotator_ids: list[str]
    value: str
    consensus_score: float | None
    score: float


class PredictionOut(BaseModel):
    model_version: str
    predicted_class: str
    supporting: list[InfluenceOut]
    opposing: list[InfluenceOut]


class ChainOut(BaseModel):
    item_id: str
    project: str
    evidence: dict[str, Any] = Field(description="votes, weights, posterior, review (as /evidence)")
    runs: list[RunTraceOut]
    prediction: PredictionOut | None
    prediction_unavailable: str


def build_console_router(backends: Backends) -> APIRouter:
    api = APIRouter(prefix="/api/projects/{project}", responses=ERRORS, tags=["console"])

    @api.get("/burndown", response_model=ProgressOut)
    def project_progress(project: str, me: Me) -> dict[str, Any]:
        """The burndown (imported, queued, labeled, accepted, in review, labelled by the
        model), throughput per bucket, queue depth and the oldest lease."""
        data = insight.overview(backends, project, me)
        out = {k: v for k, v in data["progress"].items() if not k.endswith("_svg")}
        return {**out, "queue": data["queue"]}

    @api.get("/agreement", response_model=AgreementOut)
    def project_agreement(project: str, me: Me) -> dict[str, Any]:
        """Agreement overall and by class, and Cohen's kappa between every two annotators."""
        return insight.agreement(backends, project, me)

    @api.get("/pairs/{a}/{b}/disagreements", response_model=DisagreementsOut)
    def pair_disagreements(
        project: str, me: Me, a: str = name(), b: str = name()
    ) -> dict[str, Any]:
        """The items on which annotators `a` and `b` answered differently, newest first."""
        return insight.disagreements(backends, project, a, b, me)

    @api.get("/classes/{class_label}/contested", response_model=ContestedItemsOut)
    def class_contested(project: str, me: Me, class_label: str = name()) -> dict[str, Any]:
        """The items people split on where one of the answers was `class_label`."""
        return insight.contested(backends, project, class_label, me)

    @api.get("/models", response_model=ModelsOut)
    def project_models(project: str, me: Me) -> dict[str, Any]:
        """Every model version: held-out and gold accuracy, ECE, which one serves; runs."""
        data = insight.models(backends, project, me)
        return {k: v for k, v in data.items() if not k.endswith("_svg")}

    @api.get("/contracts", response_model=list[ContractOut])
    def project_contracts(project: str, me: Me) -> list[dict[str, Any]]:
        """The project's contract versions, newest (current) first."""
        return insight.contracts(backends, project, me)

    @api.get(
        "/contracts/{version}",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {}}, "description": "the document"}},
    )
    def export_contract(project: str, me: Me, version: str = name()) -> PlainTextResponse:
        """A contract version's document, as it was loaded (YAML or JSON), to download."""
        for c in insight.contracts(backends, project, me):
            if c["version"] == version:
                safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in version)
                return PlainTextResponse(
                    c["document"],
                    media_type="application/yaml",
                    headers={
                        "Content-Disposition": f'attachment; filename="{project}-{safe}.yaml"'
                    },
                )
        raise BackendError(404, f"project {project!r} has no contract version {version!r}")

    @api.post("/contracts", response_model=ContractLoadedOut)
    def import_contract(project: str, body: ContractIn, me: Me) -> dict[str, str]:
        """Load a new contract version (its `project:` must be this project; versions are
        immutable: the same version with other content is a 409)."""
        return insight.import_contract(backends, project, body.document, me)

    @api.get("/items/{item_id}/chain", response_model=ChainOut)
    def chain(project: str, me: Me, item_id: str = name()) -> dict[str, Any]:
        """Votes → consensus → influence depth → the runs that trained on the item →
        the labels and annotators that shaped its prediction (TraceInfluence)."""
        return insight.chain(backends, project, item_id, me)

    return api
