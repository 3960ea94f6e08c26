"""The status page in a real browser (Debian's headless Chromium, driven by Playwright) against a
gateway on the real engine, registry, Traefik and git; and its login's guard rails."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, async_playwright, expect

from gateway.records import WorkVolume
from gateway.web.keys import STORE
from tests.conftest import Gateway, MakeGateway
from tests.support.engine import docker, owned_containers, owned_volumes
from tests.support.gitrepo import GitRemote, notebook

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

CHROMIUM = "/usr/bin/chromium"
# Without these, Chromium keeps calling home, and this machine's closed network refuses it.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
    "--disable-background-networking", "--disable-component-update",
]  # fmt: skip
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts"))


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


def address(gateway: Gateway) -> str:
    return f"http://127.0.0.1:{gateway.settings.gateway_port}"


async def test_an_admin_deploys_from_the_page_and_watches_it_become_a_working_link(
    make_gateway: MakeGateway, remote: GitRemote, browser: Browser
) -> None:
    remote.commit(
        {"climate/intro.ipynb": notebook("print(6 * 7)"), "climate/requirements.txt": b"six\n"}
    )
    gateway = await make_gateway()
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    refused: list[str] = []
    page.on(
        "response",
        lambda r: (
            refused.append(f"{r.request.method} {r.url} {r.status}") if r.status >= 400 else None
        ),
    )

    await page.goto(address(gateway) + "/")
    assert await page.title() == "notebook-gateway"
    await expect(page.get_by_text("No projects yet")).to_be_visible()
    assert await page.locator("#deploy-form").count() == 0  # not an admin yet

    await page.fill("#admin-token", "not-the-token")
    await page.click("#login-button")
    await expect(page.get_by_role("alert")).to_contain_text("not the gateway's AUTH_TOKEN")
    await page.fill("#admin-token", gateway.settings.auth_token.get_secret_value())
    await page.click("#login-button")
    await expect(page.locator("#deploy-form")).to_be_visible()

    await page.fill("#deploy-project", "climate")
    await page.click("#deploy-button")
    progress = page.locator("#progress")
    await expect(progress).to_be_visible()
    row = page.locator('#progress-notebooks tr[data-notebook="intro.ipynb"]')
    # The notebook's row follows its phases while the job runs.
    await expect(row.locator(".phase")).to_have_text(
        re.compile("building|pushing|starting|ready"), timeout=120_000
    )
    await expect(page.locator("#progress-state")).to_have_text("succeeded", timeout=300_000)
    await expect(row.locator(".phase")).to_have_text("running")
    log = await page.locator("#progress-log").inner_text()
    for phase in ("fetching", "building", "starting", "ready", "done"):
        assert f" {phase}" in log, log
    href = await row.locator("a.open-link").get_attribute("href")
    assert href is not None and href.startswith(f"http://intro--climate.{gateway.instance}.")

    # The board below shows the notebook running, with its link and commit.
    board_row = page.locator('#board tr[data-notebook="intro.ipynb"]')
    await expect(board_row.locator(".badge")).to_have_text("running", timeout=30_000)
    assert await board_row.locator("a").get_attribute("href") == href
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "status-page.png"), full_page=True)

    # Its container's log, from the page.
    await board_row.get_by_role("button", name="Logs").click()
    await expect(page.locator("#logs-text")).to_contain_text("Jupyter", timeout=30_000)
    await page.get_by_role("button", name="Close").click()

    # The link works: JupyterLab opens on the notebook, through Traefik.
    notebook_page = await browser.new_page()
    await notebook_page.goto(href)
    await expect(notebook_page).to_have_title(re.compile("JupyterLab|intro"), timeout=60_000)
    await expect(notebook_page.get_by_text("print(6 * 7)").first).to_be_visible(timeout=60_000)

    # Stopping it from the page (after a confirmation) removes its container; the board says so.
    page.on("dialog", lambda dialog: dialog.accept())
    await board_row.get_by_role("button", name="Stop").click()
    await expect(board_row.locator(".badge")).to_have_text("missing", timeout=30_000)
    assert owned_containers(gateway.instance) == []
    assert not problems, problems
    # Nothing the page asked for was missing or refused, but the wrong token.
    assert refused == [f"POST {address(gateway)}/login 401"], refused


async def test_the_page_is_read_only_without_a_login_and_its_cookie_needs_its_header(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    remote.commit({"climate/intro.ipynb": notebook("print(1)")})
    gateway = await make_gateway()
    body = await gateway.publish("climate")
    async with aiohttp.ClientSession(base_url=address(gateway)) as anyone:
        async with anyone.get("/", headers={"Accept": "text/html"}) as response:
            html = await response.text()
            assert response.status == 200 and "intro.ipynb" in html
            assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        assert 'id="deploy-form"' not in html
        async with anyone.get("/") as response:  # not a browser: the JSON index
            assert (await response.json())["name"] == "notebook-gateway"
        async with anyone.get("/status") as response:
            overview = await response.json()
        assert overview["admin"] is False and overview["servers"] == []
        (project,) = overview["projects"]
        assert project["name"] == "climate" and project["last_deploy"]["state"] == "succeeded"
        assert project["notebooks"][0]["state"] == "running"
        async with anyone.post("/projects", json={"project": "climate"}) as response:
            assert response.status == 401

    # A cookie jar as a browser has it: cookies of an IP address are kept too.
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(base_url=address(gateway), cookie_jar=jar) as admin:
        token = gateway.settings.auth_token.get_secret_value()
        async with admin.post("/login", data={"token": token}, allow_redirects=False) as response:
            assert response.status == 303
            cookie = response.cookies["notebook_gateway_admin"]
            assert cookie["httponly"] and cookie["samesite"] == "Strict"
            assert token not in cookie.value
        body = {"project": "climate", "action": "update"}
        # Another site's form could send the cookie, but never this header.
        async with admin.post("/projects?wait=false", json=body) as response:
            assert response.status == 403, await response.text()
        headers = {"X-Requested-With": "notebook-gateway"}
        async with admin.post("/projects?wait=false", json=body, headers=headers) as response:
            assert response.status == 202
            job = await response.json()
        async with admin.get("/status") as response:
            assert (await response.json())["admin"] is True
        await gateway.wait_for_job(job["id"])
        async with admin.post("/logout", allow_redirects=False) as response:
            assert response.status == 403  # a change made with the cookie: the header too
        async with admin.post("/logout", headers=headers) as response:
            assert response.status == 204
        async with admin.get("/jobs") as response:
            assert response.status == 401


async def test_protected_notebooks_are_hidden_from_the_page_until_an_admin_logs_in(
    make_gateway: MakeGateway, remote: GitRemote
) -> None:
    remote.commit({"climate/intro.ipynb": notebook("print(1)")})
    gateway = await make_gateway(PROTECT_PUBLISHED="true")
    await gateway.publish("climate")
    async with aiohttp.ClientSession(base_url=address(gateway)) as anyone:
        async with anyone.get("/", headers={"Accept": "text/html"}) as response:
            html = await response.text()
        assert "intro.ipynb" not in html and "protected" in html
        for path in ("/status", "/status/board"):
            async with anyone.get(path) as response:
                assert response.status == 401
    response = await gateway.client.get("/status", headers=gateway.auth())
    assert (await response.json())["projects"][0]["notebooks"][0]["name"] == "intro.ipynb"


async def test_an_admin_sees_users_work_areas_and_removes_an_unused_one(
    make_gateway: MakeGateway, remote: GitRemote, browser: Browser
) -> None:
    """A work area left by a user who has gone (a volume as servers make them, and its
    record): listed with whose it is, and removed from the page, from the engine too."""
    remote.commit({"README.md": b"nothing to publish\n"})
    gateway = await make_gateway()
    name = f"{gateway.instance}-work-gone-analysis-0badc0de"
    labels = {"notebook-gateway.instance": gateway.instance, "notebook-gateway.kind": "work"}
    docker("volume", "create", *(f"--label={k}={v}" for k, v in labels.items()), name)
    when = datetime.now(UTC).isoformat()
    await gateway.client.app[STORE].use_volume(
        WorkVolume(name, 42, "gone", "group", "analysis", created_at=when, used_at=when)
    )
    page = await browser.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    await page.goto(address(gateway) + "/")
    await page.fill("#admin-token", gateway.settings.auth_token.get_secret_value())
    await page.click("#login-button")
    row = page.locator(f'#board tr[data-volume="{name}"]')
    await expect(row).to_contain_text("gone")
    await expect(row).to_contain_text("group/analysis")
    await row.get_by_role("button", name="Remove").click()
    await expect(page.locator("#board")).to_contain_text("None yet.", timeout=30_000)
    assert name not in owned_volumes(gateway.instance)
