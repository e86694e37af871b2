"""SCIM 2.0 at ``/scim/v2`` (RFC 7644; SPEC §10.3): the company's directory creates,
updates and removes Rollcall's users, with the token ``ROLLCALL_SCIM_TOKEN``.

What each request does to the directory is ``rollcall/entrypoints/scim/directory.py``; what is
shown of a user, ``resources.py``. The SCIM token has no rate limit: provisioning a
company is thousands of requests in a row. It is a sub-application of its own, so that
every answer, errors included, is in SCIM's shape (``errors.py``), and the API's
OpenAPI document stays the API's.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from fastapi import FastAPI, Request, Response
from scim2_models import Context, ListResponse, ResourceType, Schema

from rollcall.domain.errors import ValidationFailed
from rollcall.entrypoints.api.auth import SECRET_MIN_BYTES
from rollcall.entrypoints.api.deps import Api, if_match
from rollcall.entrypoints.scim import errors, resources
from rollcall.entrypoints.scim.directory import Directory, as_resource, response_parameters
from rollcall.entrypoints.scim.errors import Refused, Scim


def check_scim_token(token: str) -> str:
    """A SCIM token is a secret like the API's (at least 32 bytes)."""
    if len(token.encode()) < SECRET_MIN_BYTES:
        raise ValidationFailed(f"ROLLCALL_SCIM_TOKEN must be at least {SECRET_MIN_BYTES} bytes")
    return token


def create_scim_app(api: Api, token: str) -> FastAPI:
    """The SCIM service over the API's services; mounted at ``/scim/v2``."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    directory = Directory(api)

    async def authorized(request: Request) -> None:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            raise Refused(401, "A bearer token is required: the SCIM token.")

    def base(request: Request) -> str:
        mounted_at = str(request.scope.get("root_path", ""))
        return str(request.base_url).rstrip("/") + mounted_at + "/Users"

    @app.get("/ServiceProviderConfig")
    async def service_provider_config(request: Request) -> Response:
        await authorized(request)
        config = resources.service_provider_config()
        return Scim(config.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))

    @app.get("/ResourceTypes")
    async def resource_types(request: Request) -> Response:
        await authorized(request)
        return _listed(ResourceType, resources.resource_types())

    @app.get("/ResourceTypes/{name}")
    async def resource_type(name: str, request: Request) -> Response:
        await authorized(request)
        found = [t for t in resources.resource_types() if t.id == name]
        if not found:
            raise Refused(404, f"No resource type {name}.")
        return Scim(found[0].model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))

    @app.get("/Schemas")
    async def schemas(request: Request) -> Response:
        await authorized(request)
        return _listed(Schema, resources.schemas())

    @app.get("/Schemas/{schema_id}")
    async def schema(schema_id: str, request: Request) -> Response:
        await authorized(request)
        found = [s for s in resources.schemas() if s.id == schema_id]
        if not found:
            raise Refused(404, f"No schema {schema_id}.")
        return Scim(found[0].model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))

    @app.post("/.search")
    async def search_everything(request: Request) -> Response:
        await authorized(request)
        raise Refused(501, "Search /Users: it is the only resource type.")

    @app.post("/Users")
    async def create_user(request: Request) -> Response:
        await authorized(request)
        body = await _body(request)
        found = await directory.run(lambda: directory.create(body))
        return _resource(found, base(request), Context.RESOURCE_CREATION_RESPONSE, 201)

    @app.get("/Users")
    async def list_users(request: Request) -> Response:
        await authorized(request)
        return await directory.listing(dict(request.query_params), base(request))

    @app.post("/Users/.search")
    async def search_users(request: Request) -> Response:
        await authorized(request)
        body = await _body(request)
        if not isinstance(body, dict):
            raise Refused(400, "A SearchRequest is a JSON object.", "invalidSyntax")
        return await directory.listing(body, base(request))

    @app.get("/Users/{key}")
    async def get_user(key: str, request: Request) -> Response:
        await authorized(request)
        found = await directory.run(lambda: directory.current(key))
        return _resource(found, base(request), Context.RESOURCE_QUERY_RESPONSE, 200, request)

    @app.put("/Users/{key}")
    async def replace_user(key: str, request: Request) -> Response:
        await authorized(request)
        body, versions = await _body(request), await _versions(request)
        found = await directory.run(lambda: directory.replace(key, body, versions))
        return _resource(found, base(request), Context.RESOURCE_REPLACEMENT_RESPONSE, 200)

    @app.patch("/Users/{key}")
    async def patch_user(key: str, request: Request) -> Response:
        await authorized(request)
        body, versions = await _body(request), await _versions(request)
        users = base(request)
        found = await directory.run(lambda: directory.patch(key, body, versions, users))
        return _resource(found, users, Context.RESOURCE_PATCH_RESPONSE, 200)

    @app.delete("/Users/{key}")
    async def delete_user(key: str, request: Request) -> Response:
        await authorized(request)
        versions = await _versions(request)
        await directory.run(lambda: directory.remove(key, versions))
        return Response(status_code=204)

    errors.install(app)
    return app


def _resource(
    found: dict[str, Any],
    base: str,
    context: Context,
    status: int,
    request: Request | None = None,
) -> Response:
    resource = as_resource(found, base)
    parameters = response_parameters(dict(request.query_params)) if request else None
    body = resource.model_dump(scim_ctx=context, response_parameters=parameters)
    headers = {"ETag": f'W/"{found["version"]}"'}
    if status == 201:
        headers["Location"] = f"{base}/{found['key']}"
    return Scim(body, status_code=status, headers=headers)


def _listed(kind: type[Any], items: list[Any]) -> Response:
    listed = ListResponse[kind](  # type: ignore[valid-type]
        total_results=len(items), start_index=1, items_per_page=len(items), resources=items
    )
    return Scim(listed.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))


async def _body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError:
        raise Refused(400, "The body is not JSON.", "invalidSyntax") from None


async def _versions(request: Request) -> frozenset[int] | None:
    return await if_match(request.headers.get("If-Match"))
