"""The API's OpenAPI 3.1 document, generated from the route table (routes.py) and the models
the handlers validate requests with and answer in (gateway/schemas.py), so it cannot drift
from the code."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway import __version__, schemas
from gateway.web.routes import Operation, Route

ERRORS = {
    400: "The request is malformed or asks for something not allowed",
    401: "Missing or wrong credentials",
    403: "Authenticated, but not allowed",
    404: "No such thing (or not yours)",
    408: "The request body did not arrive within HTTP_TIMEOUT",
    409: "In use: a work area a server still uses",
    413: "The request body is too large",
    422: "Understood and impossible: the repository's content could not be deployed, or"
    " a server asked for what cannot be had here (a GPU, cloud storage)",
    429: "Too many requests; see Retry-After",
    502: "A service the gateway depends on failed (git, registry, Docker, Traefik, GitLab)",
    503: "The gateway or Docker is not available right now",
}


def document(routes: Iterable[Route]) -> dict[str, Any]:
    documented = [(r, r.operation) for r in routes if r.operation is not None]
    requests = {op.body for _, op in documented if op.body is not None}
    answers = {m for _, op in documented for _, m in op.answers.values() if m is not None}
    answers.add(schemas.ErrorEnvelope)
    answers.update(m for _, op in documented for m in op.events)
    _, definitions = models_json_schema(
        [(m, "validation") for m in sorted(requests, key=_name)]
        + [(m, "serialization") for m in sorted(answers, key=_name)],
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, Any] = {}
    for route, operation in documented:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(operation)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "notebook-gateway",
            "version": __version__,
            "description": "Publishes a repository of Jupyter notebooks and runs users' own "
            "notebook servers (renku-notebooks' servers API; with SERVERS_API_PREFIX set, "
            "its paths are served under that prefix too).",
        },
        "components": {
            "schemas": definitions["$defs"],
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "AUTH_TOKEN (admin), or a user's GitLab token",
                }
            },
        },
        "paths": paths,
    }


def _name(model: type[BaseModel]) -> str:
    return model.__name__


def _operation(op: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, (text, model) in op.answers.items():
        if model is not None:
            answer: dict[str, Any] | None = _json(model)
        elif op.content:
            answer = {op.content: {"schema": {"type": "string"}}}
            if op.events:
                names = ", ".join(m.__name__ for m in op.events)
                text = f"{text}; each event's data is one of {names} (components)"
        else:
            answer = None
        responses[str(status)] = {"description": text, **({"content": answer} if answer else {})}
    # Any credential may be refused (401), or not looked at after too many failures (429);
    # any body may arrive too slowly (408).
    statuses = set(op.errors) if op.public else {*op.errors, 401, 429}
    if op.body or op.any_body:
        statuses.add(408)
    for status in sorted(statuses):
        responses[str(status)] = {
            "description": ERRORS[status],
            "content": _json(schemas.ErrorEnvelope),
        }
    operation: dict[str, Any] = {"summary": op.summary, "responses": responses}
    if op.params:
        operation["parameters"] = list(op.params)
    if op.body:
        operation["requestBody"] = {"required": True, "content": _json(op.body)}
    elif op.any_body:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    operation["security"] = [] if op.public else [{"bearer": []}]
    return operation


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}
