"""The operator console's pages (managers and admins; the services decide, so a page of
a project someone does not manage is a 404 or 403 like its API): overview, agreement,
the items a pair disagreed on, models, contracts, and an item's governance chain."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from strata.web import insight
from strata.web.backends import Backends, Person
from strata.web.pages import render, signed_in

SECTIONS = (
    ("overview", "Overview", ""),
    ("agreement", "Agreement", "/agreement"),
    ("models", "Models", "/models"),
    ("contracts", "Contracts", "/contracts"),
)


def build_console_pages(backends: Backends) -> APIRouter:
    pages = APIRouter(include_in_schema=False)

    def console(
        request: Request,
        project: str,
        section: str,
        template: str,
        data: Callable[[Person], dict[str, Any]],
    ) -> Response:
        me = signed_in(request)
        if me is None:
            return RedirectResponse("/signin", 303)
        return render(
            backends,
            request,
            me,
            template,
            project=project,
            section=section,
            sections=SECTIONS,
            **data(me),
        )

    @pages.get("/projects/{project}/console")
    def overview(request: Request, project: str) -> Response:
        return console(
            request,
            project,
            "overview",
            "console.html",
            lambda me: insight.overview(backends, project, me),
        )

    @pages.get("/projects/{project}/console/agreement")
    def agreement(request: Request, project: str) -> Response:
        return console(
            request,
            project,
            "agreement",
            "console_agreement.html",
            lambda me: {"agreement": insight.agreement(backends, project, me)},
        )

    @pages.get("/projects/{project}/console/pairs/{a}/{b}")
    def pair(request: Request, project: str, a: str, b: str) -> Response:
        return console(
            request,
            project,
            "agreement",
            "console_pair.html",
            lambda me: {"pair": insight.disagreements(backends, project, a, b, me, limit=500)},
        )

    @pages.get("/projects/{project}/console/classes/{class_label}")
    def contested(request: Request, project: str, class_label: str) -> Response:
        return console(
            request,
            project,
            "agreement",
            "console_class.html",
            lambda me: {"contested": insight.contested(backends, project, class_label, me, 500)},
        )

    @pages.get("/projects/{project}/console/models")
    def models(request: Request, project: str) -> Response:
        return console(
            request,
            project,
            "models",
            "console_models.html",
            lambda me: {"models": insight.models(backends, project, me)},
        )

    @pages.get("/projects/{project}/console/contracts")
    def contracts(request: Request, project: str) -> Response:
        return console(
            request,
            project,
            "contracts",
            "console_contracts.html",
            lambda me: {"contracts": insight.contracts(backends, project, me)},
        )

    @pages.get("/projects/{project}/items/{item_id}")
    def item(request: Request, project: str, item_id: str) -> Response:
        return console(
            request,
            project,
            "",
            "item_chain.html",
            lambda me: {"chain": insight.chain(backends, project, item_id, me)},
        )

    return pages
