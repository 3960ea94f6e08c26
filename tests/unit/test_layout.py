"""The architecture as docs/architecture.md draws it: imports point down only, each service
takes its settings section, and every room is on the page."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from gateway import settings as settings_module
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = ROOT / "gateway"
PURE = ("gateway.publish", "gateway.servers")
PURE_MODULES = (
    "models", "records", "schemas", "settings", "naming", "remotes", "references",
    "templating", "traefik", "webhooks", "errors", "sessions",
)  # fmt: skip
# What each room may not import.
FORBIDDEN = {
    "pure": ("gateway.adapters", "gateway.services", "gateway.web"),
    "gateway.adapters": ("gateway.services", "gateway.web"),
    "gateway.services": ("gateway.web",),
}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(f"{p}.") for p in packages)


def room(name: str) -> str | None:
    if within(name, PURE) or name.removeprefix("gateway.") in PURE_MODULES:
        return "pure"
    return next((r for r in ("gateway.adapters", "gateway.services") if within(name, (r,))), None)


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("gateway")}


MODULES = sorted(GATEWAY.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down_only(path: Path) -> None:
    name = module_name(path)
    where = room(name)
    if where is None or path.parent.name == "templates":
        return
    wrong = sorted(i for i in imports(path) if within(i, FORBIDDEN[where]))
    assert not wrong, f"{name} ({where}) imports {wrong}"


def test_the_rule_catches_an_import_against_it(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from gateway.services.rollout import Rollout\nimport gateway.web.app\n")
    assert imports(module) >= {"gateway.services.rollout", "gateway.web.app"}


SECTIONS = [
    value
    for value in vars(settings_module).values()
    if isinstance(value, type)
    and dataclasses.is_dataclass(value)
    and value.__name__.endswith("Settings")
]


@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: s.__name__)
def test_each_section_takes_the_settings_by_their_names(section: type) -> None:
    settings = Settings.from_env(
        {"AUTH_TOKEN": "t" * 20, "GITLAB_REPO_URL": "https://gitlab.example.org/t/nb.git"}
    )
    part = settings.section(section)
    for field in dataclasses.fields(section):
        value = getattr(part, field.name)
        expected = getattr(settings, field.name)
        assert value == expected, field.name


def test_every_room_is_on_the_architecture_page() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text()
    rooms = [p.relative_to(GATEWAY) for p in GATEWAY.iterdir() if (p / "__init__.py").exists()]
    rooms += [p.relative_to(GATEWAY) for p in (GATEWAY / "adapters").iterdir() if p.is_dir()]
    missing = [str(r) for r in rooms if f"{r.name}/" not in page and f"{r}/" not in page]
    assert not missing, missing
