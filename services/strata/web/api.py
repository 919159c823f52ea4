"""The HTTP/JSON API under /api: what the pages call, described at /api/openapi.json.

Every route calls the services as the signed-in person (`Backends.call`); a request
without a session gets 401, a state change without its CSRF token 403, and a
service's refusal its HTTP counterpart (a non-member's 404 included).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from strata.v1 import gateway_pb2, quality_pb2
from strata.web import views
from strata.web.backends import Anonymous, BackendError, Backends, Person
from strata.web.metrics import WebMetrics
from strata.web.session import COOKIE, CSRF_HEADER, cookie_attributes, csrf_ok, csrf_token

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


# -- request and response shapes (OpenAPI) ---------------------------------------------


class TokenSignIn(BaseModel):
    token: str = Field(min_length=1, max_length=512, description="a token `strata tokens` issued")


class LinkSignIn(BaseModel):
    code: str = Field(min_length=1, max_length=512, description="the code of a sign-in link")


class SessionOut(BaseModel):
    annotator_id: str
    admin: bool
    csrf_token: str = Field(description="send it as X-CSRF-Token on every state change")
    expires_at: str | None


class ProjectOut(BaseModel):
    project: str
    role: str
    status: str
    contract_version: str


class ClassOut(BaseModel):
    name: str
    definition: str
    positive_examples: list[str]
    negative_examples: list[str]


class RulingOut(BaseModel):
    case: str
    ruling: str


class ContractOut(BaseModel):
    project: str
    version: str
    classes: list[ClassOut]
    edge_cases: list[RulingOut]
    hide_prelabels: bool
    lease_seconds: int


class PrelabelOut(BaseModel):
    value: str
    confidence: float
    model_version: str
    calibrated: bool


class TaskOut(BaseModel):
    task_id: str
    item_id: str
    project: str
    content: dict[str, Any]
    prelabel: PrelabelOut | None
    lease_expires_at: str | None
    ontology_version: str
    classes: list[str]
    review: bool


class NextTaskOut(BaseModel):
    task: TaskOut | None
    retry_after_ms: int


class LabelIn(BaseModel):
    value: str = Field(min_length=1, max_length=4096)
    client_label_id: str = Field(min_length=1, max_length=128)
    duration_ms: int = Field(ge=0, le=86_400_000, description="from showing the task to submit")
    active_ms: int = Field(
        ge=0, le=86_400_000, description="of that, time with the page focused and the person active"
    )


class LabelOut(BaseModel):
    label_id: str
    duplicate: bool


class AmendIn(BaseModel):
    value: str = Field(min_length=1, max_length=4096)
    revision: int = Field(
        ge=0,
        le=1_000_000,
        description="the revision this change replaces: 0 for the answer as submitted, then "
        "the revision the previous change returned",
    )
    active_ms: int = Field(
        default=0, ge=0, le=86_400_000, description="active time on the task in all; 0 keeps it"
    )


class AmendOut(BaseModel):
    label_id: str
    revision: int
    duplicate: bool


class SkipIn(BaseModel):
    reason: str = Field(default="", max_length=200)


class SkipOut(BaseModel):
    skipped: bool


class ProgressOut(BaseModel):
    labels: int
    agreement_with_consensus: float | None
    median_seconds: float | None


class ErrorOut(BaseModel):
    error: str
    code: str = ""


ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorOut} for s in (400, 401, 403, 404, 409, 422, 429, 503)
}


# -- who is asking -------------------------------------------------------------------


def source_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


_TOKEN = re.compile(r"^[\x21-\x7e]{1,512}$")


def looks_like_token(text: str) -> bool:
    """Printable ASCII without spaces, as every token and code Strata issues is; anything
    else cannot travel in gRPC metadata and is no credential."""
    return bool(_TOKEN.match(text))


def person(request: Request) -> Person:
    """The signed-in person (401 without a session; 403 for a state change without its
    CSRF token)."""
    token = request.cookies.get(COOKIE, "")
    if not looks_like_token(token):
        raise BackendError(401, "sign in first", "UNAUTHENTICATED")
    if request.method in UNSAFE and not csrf_ok(token, request.headers.get(CSRF_HEADER)):
        raise BackendError(
            403, "this request lacks its CSRF token (X-CSRF-Token): reload the page", "CSRF"
        )
    return Person(token, source_of(request))


def anonymous(request: Request) -> Anonymous:
    """Someone signing in. A sign-in is JSON from this site's own pages: a form on another
    site can send neither (login CSRF)."""
    if "application/json" not in request.headers.get("content-type", ""):
        raise BackendError(415, "send JSON (Content-Type: application/json)", "CONTENT_TYPE")
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise BackendError(403, "sign in from this site's own page", "CROSS_SITE")
    return Anonymous(source_of(request))


Me = Annotated[Person, Depends(person)]
Visitor = Annotated[Anonymous, Depends(anonymous)]


def secure_cookie(request: Request, always: bool) -> bool:
    return always or request.url.scheme == "https"


def build_router(
    backends: Backends, metrics: WebMetrics, *, session_ttl_s: int, secure_always: bool
) -> APIRouter:
    """The /api routes over `backends`."""
    api = APIRouter(prefix="/api", responses=ERRORS)
    gw = backends.gateway

    def signed_in(
        kind: str,
        credential: str,
        call: Callable[[str], Any],
        request: Request,
        response: Response,
    ) -> SessionOut:
        """A sign-in (`kind`: token or link) with `credential`: refused at once when it
        cannot be one, else the gateway's session, counted either way, in the cookie."""
        try:
            if not looks_like_token(credential):
                what = "a Strata token (stk_...)" if kind == "token" else "a sign-in link's code"
                raise BackendError(401, f"that is not {what}", "UNAUTHENTICATED")
            reply = call(credential)
        except BackendError:
            metrics.sign_ins.labels(kind, "refused").inc()
            raise
        metrics.sign_ins.labels(kind, "ok").inc()
        response.set_cookie(
            value=reply.session_token,
            **cookie_attributes(secure_cookie(request, secure_always), session_ttl_s),  # type: ignore[arg-type]
        )
        return SessionOut(
            annotator_id=reply.annotator_id,
            admin=reply.admin,
            csrf_token=csrf_token(reply.session_token),
            expires_at=views.iso(reply.expires_at),
        )

    @api.post("/session", response_model=SessionOut, tags=["session"])
    def sign_in(
        body: TokenSignIn, request: Request, response: Response, who: Visitor
    ) -> SessionOut:
        """Sign in with a token; the session lives in an HttpOnly cookie."""
        return signed_in(
            "token",
            body.token.strip(),
            lambda token: backends.call(
                gw.StartSession,
                gateway_pb2.StartSessionRequest(ttl_seconds=session_ttl_s),
                Person(token, who.source),
            ),
            request,
            response,
        )

    @api.post("/session/link", response_model=SessionOut, tags=["session"])
    def sign_in_with_link(
        body: LinkSignIn, request: Request, response: Response, who: Visitor
    ) -> SessionOut:
        """Sign in with the code of a one-time sign-in link."""
        return signed_in(
            "link",
            body.code.strip(),
            lambda code: backends.call(
                gw.RedeemSignInLink,
                gateway_pb2.RedeemSignInLinkRequest(code=code, ttl_seconds=session_ttl_s),
                who,
            ),
            request,
            response,
        )

    @api.get("/session", response_model=SessionOut, tags=["session"])
    def current_session(me: Me) -> SessionOut:
        """Who is signed in, and the CSRF token of their session."""
        reply = backends.call(gw.WhoAmI, gateway_pb2.WhoAmIRequest(), me)
        return SessionOut(
            annotator_id=reply.annotator_id,
            admin=reply.admin,
            csrf_token=csrf_token(me.token),
            expires_at=views.iso(reply.token_expires_at),
        )

    @api.delete("/session", status_code=204, tags=["session"])
    def sign_out(request: Request, me: Me) -> Response:
        """Sign out: the session token is revoked and the cookie cleared."""
        try:
            backends.call(gw.EndSession, gateway_pb2.EndSessionRequest(), me)
        except BackendError as exc:
            if exc.status != 401:  # an expired session is signed out already
                raise
        response = Response(status_code=204)
        response.delete_cookie(COOKIE, path="/", secure=secure_cookie(request, secure_always))
        return response

    @api.get("/projects", response_model=list[ProjectOut], tags=["projects"])
    def projects(me: Me) -> list[dict[str, Any]]:
        """The projects the signed-in person is a member of (an admin: every project)."""
        reply = backends.call(gw.ListProjects, gateway_pb2.ListProjectsRequest(), me)
        return [views.project(p) for p in reply.projects]

    @api.get("/projects/{project}/contract", response_model=ContractOut, tags=["labeling"])
    def contract(project: str, me: Me) -> dict[str, Any]:
        """The project's labeling instructions: classes, examples, rulings, version."""
        reply = backends.call(gw.GetContract, gateway_pb2.GetContractRequest(project=project), me)
        return views.contract(reply.contract)

    @api.post("/projects/{project}/tasks/next", response_model=NextTaskOut, tags=["labeling"])
    def next_task(project: str, me: Me) -> dict[str, Any]:
        """Lease the next task (None: no work now; ask again after retry_after_ms)."""
        reply = backends.call(gw.NextTask, gateway_pb2.NextTaskRequest(project=project), me)
        return {
            "task": views.task(reply.task) if reply.HasField("task") else None,
            "retry_after_ms": reply.retry_after_ms,
        }

    @api.post("/tasks/{task_id}/label", response_model=LabelOut, tags=["labeling"])
    def submit_label(task_id: str, body: LabelIn, me: Me) -> LabelOut:
        """Submit an answer; a retry with the same client_label_id is answered, not stored
        twice."""
        reply = backends.call(
            gw.SubmitLabel,
            gateway_pb2.SubmitLabelRequest(
                task_id=task_id,
                value=body.value,
                client_label_id=body.client_label_id,
                duration_ms=max(body.duration_ms, body.active_ms),
                active_ms=body.active_ms,
            ),
            me,
        )
        return LabelOut(label_id=reply.label_id, duplicate=reply.duplicate)

    @api.put("/tasks/{task_id}/label", response_model=AmendOut, tags=["labeling"])
    def amend_label(task_id: str, body: AmendIn, me: Me) -> AmendOut:
        """Change your answer on a task while its lease holds (409 once it has run out, or
        when `revision` is not the answer's current one)."""
        reply = backends.call(
            gw.AmendLabel,
            gateway_pb2.AmendLabelRequest(
                task_id=task_id, value=body.value, revision=body.revision, active_ms=body.active_ms
            ),
            me,
        )
        return AmendOut(label_id=reply.label_id, revision=reply.revision, duplicate=reply.duplicate)

    @api.post("/tasks/{task_id}/skip", response_model=SkipOut, tags=["labeling"])
    def skip_task(task_id: str, body: SkipIn, me: Me) -> SkipOut:
        """Give a task back without answering it."""
        backends.call(
            gw.SkipTask, gateway_pb2.SkipTaskRequest(task_id=task_id, reason=body.reason), me
        )
        return SkipOut(skipped=True)

    @api.get("/projects/{project}/progress", response_model=ProgressOut, tags=["labeling"])
    def progress(project: str, me: Me) -> dict[str, Any]:
        """The signed-in person's own labels in the project."""
        who = backends.call(gw.WhoAmI, gateway_pb2.WhoAmIRequest(project=project), me)
        reply = backends.call(
            backends.quality.AnnotatorScores,
            quality_pb2.AnnotatorScoresRequest(project=project, annotator_ids=[who.annotator_id]),
            me,
        )
        mine = [a for a in reply.annotators if a.annotator_id == who.annotator_id]
        return views.own_progress(mine[0] if mine else None)

    return api
