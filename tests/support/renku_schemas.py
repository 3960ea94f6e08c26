"""JSON Schemas of renku-notebooks' answers, written from its marshmallow schemas at two releases,
so a test can hold the gateway's live answers against what renku itself would send.

Sources (github.com/SwissDataScienceCenter/renku-notebooks, at tags 1.10.0 and 1.31.1):
- renku_notebooks/api/schemas/servers_get.py: LaunchNotebookResponse*, ServerStatus,
  ServerStatusDetail, ServerStatusWarning, ResourceRequests, ResourceUsage, UserPodResources,
  ServersGetResponse;
- renku_notebooks/api/schemas/custom_fields.py: CpuField (a number of cores), ByteSizeField
  (a size: its load regex; renku dumps "<n>G"), GpuField (whole GPUs);
- renku_notebooks/config/static.py: _ServersGetEndpointAnnotations (required and optional
  annotation names, every value a string);
- renku_notebooks/api/schemas/config_server_options.py: ServerOptionsEndpointResponse;
- renku_notebooks/api/schemas/logs.py: ServerLogs.

Where marshmallow would drop or keep an unknown key (EXCLUDE, INCLUDE) the schemas allow
extra keys; everything renku requires, and the type of everything it names, is checked.
"""

from __future__ import annotations

from typing import Any

BYTE_SIZE = {
    "type": "string",
    "minLength": 1,
    "pattern": r"^(?<!-)([0-9]*\.?[0-9]*)((?<=[0-9.])[EPTGMKeptgmkbBi]*)$",
}
CPU = {"type": "number", "minimum": 0}
GPU = {"type": "integer", "minimum": 0}
STATES_1_10 = ["running", "starting", "stopping", "failed"]
STATES_1_31 = [*STATES_1_10, "hibernated"]
REQUIRED_ANNOTATIONS = [
    "renku.io/namespace",
    "renku.io/projectName",
    "renku.io/branch",
    "renku.io/commit-sha",
    "renku.io/default_image_used",
    "renku.io/repository",
]
OPTIONAL_ANNOTATIONS_1_10 = [
    "renku.io/servername",
    "renku.io/username",
    "renku.io/git-host",
    "renku.io/gitlabProjectId",
    "jupyter.org/servername",
    "jupyter.org/username",
]

ANNOTATIONS = {
    "type": "object",
    "required": REQUIRED_ANNOTATIONS,
    "properties": {
        name: {"type": "string"} for name in REQUIRED_ANNOTATIONS + OPTIONAL_ANNOTATIONS_1_10
    },
    "additionalProperties": {"type": "string"},  # INCLUDE: kept, and strings
}
RESOURCES = {
    "type": "object",
    "required": ["requests"],
    "properties": {
        "requests": {
            "type": "object",
            "required": ["cpu", "memory"],
            "properties": {"cpu": CPU, "memory": BYTE_SIZE, "storage": BYTE_SIZE, "gpu": GPU},
        },
        "usage": {
            "type": "object",
            "properties": {"cpu": CPU, "memory": BYTE_SIZE, "storage": BYTE_SIZE},
        },
    },
}
STARTED = {"anyOf": [{"type": "null"}, {"type": "string", "format": "date-time"}]}


def _server(status: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["name", "url", "image", "started", "status", "annotations", "resources"],
        "properties": {
            "annotations": ANNOTATIONS,
            "name": {"type": "string", "minLength": 1},
            "state": {"type": "object"},
            "started": STARTED,
            "status": status,
            "url": {"type": "string"},
            "resources": RESOURCES,
            "image": {"type": "string"},
        },
    }


SERVER_1_10 = _server(
    {
        "type": "object",
        "required": ["state"],
        "properties": {"state": {"enum": STATES_1_10}, "message": {"type": "string"}},
    }
)
SERVER_1_31 = _server(
    {
        "type": "object",
        "required": ["state", "details", "totalNumContainers", "readyNumContainers"],
        "properties": {
            "state": {"enum": STATES_1_31},
            "message": {"type": "string"},
            "details": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["step", "status"],
                    "properties": {
                        "step": {"type": "string"},
                        "status": {"enum": ["ready", "waiting", "executing", "failed"]},
                    },
                },
            },
            "totalNumContainers": {"type": "integer", "minimum": 0},
            "readyNumContainers": {"type": "integer", "minimum": 0},
            "warnings": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["message"],
                    "properties": {"message": {"type": "string"}, "critical": {"type": "boolean"}},
                },
            },
        },
    }
)


def server_list(server: dict[str, Any]) -> dict[str, Any]:
    """ServersGetResponse: servers by name."""
    return {
        "type": "object",
        "required": ["servers"],
        "properties": {"servers": {"type": "object", "additionalProperties": server}},
    }


def _choice(value: dict[str, Any]) -> dict[str, Any]:
    """BaseServerOptionsChoice and its enum kinds."""
    return {
        "type": "object",
        "required": ["order", "displayName", "type", "default"],
        "properties": {
            "order": {"type": "integer", "minimum": 1},
            "displayName": {"type": "string"},
            "type": {"enum": ["enum", "boolean"]},
            "default": value,
            "options": {"type": "array", "items": value},
        },
    }


OPTIONS_1_10 = {
    "type": "object",
    "required": ["cloudstorage"],
    "properties": {
        "defaultUrl": _choice({"type": "string"}),
        "cpu_request": _choice(CPU),
        "mem_request": _choice(BYTE_SIZE),
        "disk_request": _choice(BYTE_SIZE),
        "lfs_auto_fetch": _choice({"type": "boolean"}),
        "gpu_request": _choice(GPU),
        "cloudstorage": {
            "type": "object",
            "required": ["s3"],
            "properties": {
                "s3": {
                    "type": "object",
                    "required": ["enabled"],
                    "properties": {"enabled": {"type": "boolean"}},
                }
            },
        },
    },
}
OPTIONS_1_31 = {
    "type": "object",
    "required": ["cloudstorage"],
    "properties": {
        "defaultUrl": _choice({"type": "string"}),
        "lfs_auto_fetch": _choice({"type": "boolean"}),
        "cloudstorage": {
            "type": "object",
            "required": ["enabled"],
            "properties": {"enabled": {"type": "boolean"}},
        },
    },
}
LOGS = {
    "type": "object",
    "properties": {"jupyter-server": {"type": "string"}},
    "additionalProperties": {"type": "string"},
}

RELEASES = {
    "1.10.0": {"server": SERVER_1_10, "options": OPTIONS_1_10, "logs": LOGS},
    "1.31.1": {"server": SERVER_1_31, "options": OPTIONS_1_31, "logs": LOGS},
}
