"""Request bodies, validated with clear messages."""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from gateway.errors import BadRequest

MAX_PROJECT_NAME = 255


def check_project_name(name: str) -> str:
    """A plain top-level folder name: no path separators, no '.' or '..', nothing hidden."""
    if not name:
        raise ValueError("must not be empty")
    if name in (".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"{name!r} is not a plain folder name")
    if name.startswith("."):
        raise ValueError(f"{name!r} is a hidden folder, not a project")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError("must not contain control characters")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_PROJECT_NAME:
        raise ValueError(f"must be at most {MAX_PROJECT_NAME} bytes")
    return name


class ProjectDelete(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    project: str

    @field_validator("project")
    @classmethod
    def _project(cls, value: str) -> str:
        return check_project_name(value)


class ProjectUpdate(ProjectDelete):
    action: Literal["update"]


T = TypeVar("T", bound=BaseModel)


def parse(model: type[T], data: object) -> T:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_input=False):
            field = ".".join(str(p) for p in error["loc"]) or "body"
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "missing":
                message = "is required"
            elif error["type"] == "literal_error" and field == "action":
                message = "must be 'update' (use DELETE /projects to remove a project)"
            elif error["type"] == "model_type":
                message = "must be a JSON object"
            problems.append(f"{field}: {message}")
        raise BadRequest(
            "invalid request: " + "; ".join(problems), detail={"problems": problems}
        ) from None
