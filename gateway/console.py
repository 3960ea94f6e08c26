"""The client commands of `notebook-gateway` (deploy, list, logs): what they print, and how they
find the gateway. The HTTP conversation itself is gateway/client.py."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import aiohttp

from gateway.client import ClientError, Event, GatewayClient, Unreachable
from gateway.errors import ConfigError
from gateway.settings import read_environment

EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return 130


async def _run(args: argparse.Namespace) -> int:
    out = sys.stdout
    try:
        async with _gateway(args) as client:
            if args.command == "deploy":
                return await deploy(client, args.project, out, verbose=args.verbose)
            if args.command == "list":
                return await list_all(client, out, as_json=args.json)
            if args.command == "volumes":
                return await volumes(client, out, args.remove, as_json=args.json)
            return await print_logs(client, args.name, args.lines, out)
    except ConfigError as exc:
        print(f"notebook-gateway: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except ClientError as exc:
        print(f"notebook-gateway: {exc.message}", file=sys.stderr)
        return EXIT_UNREACHABLE if isinstance(exc, Unreachable) else EXIT_FAILED


@contextlib.asynccontextmanager
async def _gateway(args: argparse.Namespace) -> AsyncIterator[GatewayClient]:
    async with aiohttp.ClientSession() as session:
        if getattr(args, "local", False):
            async with _local_gateway(args.env_file) as (url, token):
                yield GatewayClient(session, url, token)
            return
        env = read_environment(os.environ, args.env_file)
        token = args.token or env.get("AUTH_TOKEN", "")
        if not token:
            raise ConfigError("no admin token: pass --token or set AUTH_TOKEN")
        port = env.get("GATEWAY_PORT") or "3000"
        url = args.url or env.get("GATEWAY_URL") or f"http://localhost:{port}"
        yield GatewayClient(session, url, token)


@contextlib.asynccontextmanager
async def _local_gateway(env_file: Path) -> AsyncIterator[tuple[str, str]]:
    """The gateway, in this process, on a loopback port of its own, for as long as needed;
    no periodic reconcile or culling (a running gateway does that)."""
    from aiohttp import web

    from gateway.logs import configure_logging
    from gateway.redact import Redactor
    from gateway.settings import Settings
    from gateway.web.app import create_app

    settings = Settings.from_env(os.environ, env_file).model_copy(
        update={"reconcile_interval": 0.0, "cull_idle_timeout": 0.0, "cull_max_age": 0.0}
    )
    configure_logging("WARNING", Redactor(settings.secrets()), settings.log_format)
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}", settings.auth_token.get_secret_value()
    finally:
        await runner.cleanup()


async def deploy(client: GatewayClient, project: str, out: TextIO, verbose: bool = False) -> int:
    started = time.monotonic()
    job = await client.deploy(project)
    print(f"job {job['id']} · update {project}", file=out, flush=True)
    final: dict[str, Any] | None = None
    async for event in client.events(job["id"]):
        if event.data.get("final"):
            final = event.data
            break
        if event.data.get("output") and not verbose:
            continue
        print(_progress_line(event), file=out, flush=True)
    assert final is not None
    if "job" not in final:
        print(f"failed: {final.get('reason')}", file=out)
        return EXIT_FAILED
    finished = final["job"]
    print(f"{finished['state']} in {time.monotonic() - started:.1f} s", file=out)
    for notebook in finished["notebooks"]:
        where = notebook["url"] or notebook.get("message") or ""
        print(f"  {notebook['state']:<8} {notebook['name']}  {where}", file=out)
    if finished["error"]:
        print(f"error: {finished['error']['message']}", file=out)
    return 0 if finished["state"] == "succeeded" else EXIT_FAILED


def _progress_line(event: Event) -> str:
    line = event.data
    where = f"{line['notebook']}  " if line.get("notebook") else ""
    prefix = "    | " if line.get("output") else ""
    return f"  {event.name:<10} {where}{prefix}{line.get('message', '')}"


async def list_all(client: GatewayClient, out: TextIO, as_json: bool = False) -> int:
    status = await client.call("GET", "/status")
    if as_json:
        json.dump(status, out, indent=2)
        out.write("\n")
        return 0
    for job in status["jobs"]:
        print(f"{job['state']:<9} job {job['id']} · {job['action']} {job['project']}", file=out)
    if not status["projects"]:
        print("no projects", file=out)
    for project in status["projects"]:
        last = project["last_deploy"]
        finished = last["finished"][:19].replace("T", " ") if last else ""
        when = f"  (last deploy {finished} UTC, {last['state']})" if last else ""
        print(f"{project['name']}{when}", file=out)
        for nb in project["notebooks"]:
            print(f"  {nb['state']:<8} {nb['name']}  {nb['url']}  [{nb['container']}]", file=out)
        if not project["notebooks"]:
            print("  (not deployed)", file=out)
    if status["servers"]:
        print("users' servers", file=out)
    for server in status["servers"]:
        notes = server["annotations"]
        print(
            f"  {server['status']['state']:<8} {server['name']}  {notes['user']}"
            f"  {notes['namespace']}/{notes['project']}@{notes['commit_sha'][:8]}  {server['url']}",
            file=out,
        )
    return 0


async def volumes(
    client: GatewayClient, out: TextIO, remove: str | None = None, as_json: bool = False
) -> int:
    if remove:
        await client.call("DELETE", f"/volumes/{quote(remove, safe='')}")
        print(f"removed {remove}", file=out)
        return 0
    found = await client.call("GET", "/volumes")
    if as_json:
        json.dump(found, out, indent=2)
        out.write("\n")
        return 0
    if not found["volumes"]:
        print("no work areas", file=out)
    for volume in found["volumes"]:
        size = "?" if volume["size"] is None else _size(volume["size"])
        used = ", ".join(volume["servers"]) or f"unused since {volume['used_at'][:10]}"
        print(
            f"{volume['name']}  {volume['user']}  {volume['namespace']}/{volume['project']}"
            f"  {size}  {used}",
            file=out,
        )
    return 0


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


async def print_logs(client: GatewayClient, name: str, lines: int, out: TextIO) -> int:
    logs = await client.call(
        "GET", f"/logs/{quote(name, safe='')}", params={"max_lines": str(lines)}
    )
    text = logs.get("jupyter-server", "")
    out.write(text + ("\n" if text and not text.endswith("\n") else ""))
    return 0
