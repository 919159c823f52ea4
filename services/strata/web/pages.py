"""Server-rendered pages. Each one asks the services, as the signed-in person, for what
it shows, so a page of a project the person is not a member of is a 404 like any other.
The pages' scripts then talk to /api."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from strata.v1 import gateway_pb2
from strata.web import views
from strata.web.api import looks_like_token
from strata.web.backends import Backends, Person
from strata.web.session import COOKIE, csrf_token

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")

TITLES = {
    400: "That request is not right",
    403: "Not allowed",
    404: "Not found",
    409: "That changed meanwhile",
    429: "Too many attempts",
    503: "A service is not answering",
}


def error_page(request: Request, status: int, message: str) -> Response:
    """The page for a refused or failed request (401: the sign-in page)."""
    if status == 401:
        return RedirectResponse("/signin", status_code=303)
    return TEMPLATES.TemplateResponse(
        request,
        "error.html",
        {"status": status, "title": TITLES.get(status, "Something failed"), "message": message},
        status_code=status,
    )


def signed_in(request: Request) -> Person | None:
    token = request.cookies.get(COOKIE, "")
    if not looks_like_token(token):
        return None
    return Person(token, request.client.host if request.client else "unknown")


def render(
    backends: Backends, request: Request, me: Person, template: str, **context: Any
) -> HTMLResponse:
    """A page for `me`: who they are (and so whether their session holds) and `context`."""
    who = backends.call(backends.gateway.WhoAmI, gateway_pb2.WhoAmIRequest(), me)
    base = {"me": who.annotator_id, "admin": who.admin, "csrf": csrf_token(me.token)}
    return TEMPLATES.TemplateResponse(request, template, {**base, **context})


def build_pages(backends: Backends) -> APIRouter:
    pages = APIRouter(include_in_schema=False)
    gw = backends.gateway

    def page(request: Request, me: Person, template: str, **context: Any) -> HTMLResponse:
        return render(backends, request, me, template, **context)

    @pages.get("/")
    def home(request: Request) -> Response:
        return RedirectResponse("/projects" if signed_in(request) else "/signin", 303)

    @pages.get("/signin")
    def sign_in(request: Request) -> Response:
        return TEMPLATES.TemplateResponse(request, "signin.html", {})

    @pages.get("/projects")
    def projects(request: Request) -> Response:
        me = signed_in(request)
        if me is None:
            return RedirectResponse("/signin", 303)
        reply = backends.call(gw.ListProjects, gateway_pb2.ListProjectsRequest(), me)
        return page(
            request, me, "projects.html", projects=[views.project(p) for p in reply.projects]
        )

    def workbench(request: Request, project: str, mode: str) -> Response:
        me = signed_in(request)
        if me is None:
            return RedirectResponse("/signin", 303)
        reply = backends.call(gw.GetContract, gateway_pb2.GetContractRequest(project=project), me)
        contract = views.contract(reply.contract)
        return page(
            request,
            me,
            "workbench.html",
            project=project,
            mode=mode,
            contract=contract,
            # Inside <script>: no '<' may end it early.
            contract_json=json.dumps(contract).replace("<", "\\u003c"),
        )

    @pages.get("/projects/{project}/label")
    def label(request: Request, project: str) -> Response:
        return workbench(request, project, "label")

    @pages.get("/projects/{project}/review")
    def review(request: Request, project: str) -> Response:
        return workbench(request, project, "review")

    return pages
