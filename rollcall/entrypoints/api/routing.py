"""How the API's routers are made and joined to the application."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from rollcall.entrypoints.api.errors import RESPONSES


def operation_id(route: APIRoute) -> str:
    """Stable operation ids for generated clients: the route function's name."""
    return route.name


def api_router(**kwargs: Any) -> APIRouter:
    """A router whose routes carry, from the start, what the application would give
    them on inclusion: the error answers every route may give, and operation ids."""
    return APIRouter(responses=RESPONSES, generate_unique_id_function=operation_id, **kwargs)


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """Put a router's routes on the application itself, as ``include_router`` did before
    FastAPI 0.137. Since then an included router stays a node of the routing tree, and
    with FastAPI 0.165 it worked out its routes' settings again on requests: a sixth of
    an enroll's CPU, measured. A route made by ``api_router`` already carries its
    router's prefix, tags, answers and operation id; no router here adds dependencies
    of its own (the assertion keeps it so)."""
    assert not router.dependencies, "router-level dependencies would be lost"
    app.router.routes.extend(router.routes)
