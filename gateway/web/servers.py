"""The servers API, in renku-notebooks' paths and shapes: start, list, inspect and stop one's own
notebook servers, choose from the server options, read a server's log."""

from __future__ import annotations

from aiohttp import web

from gateway.schemas import ServerRequest, parse
from gateway.web.auth import authenticate
from gateway.web.http import MAX_NOTIFICATION, flag, int_param, json_body
from gateway.web.keys import SERVERS

routes = web.RouteTableDef()

FILTERS = ("namespace", "project", "branch", "commit_sha")
MAX_LOG_LINES = 10_000


@routes.post("/servers")
async def start_server(request: web.Request) -> web.Response:
    who = await authenticate(request)
    body = parse(ServerRequest, await json_body(request, MAX_NOTIFICATION))
    server, created = await request.app[SERVERS].start(who, body)
    return web.json_response(server, status=201 if created else 200)


@routes.get("/servers")
async def list_servers(request: web.Request) -> web.Response:
    who = await authenticate(request)
    filters = {key: request.query[key] for key in FILTERS if key in request.query}
    return web.json_response({"servers": await request.app[SERVERS].list(who, filters)})


@routes.get("/servers/{name}")
async def get_server(request: web.Request) -> web.Response:
    who = await authenticate(request)
    return web.json_response(await request.app[SERVERS].get(who, request.match_info["name"]))


@routes.delete("/servers/{name}")
async def stop_server(request: web.Request) -> web.Response:
    who = await authenticate(request)
    forced = flag(request, "forced", default=False)
    await request.app[SERVERS].stop(who, request.match_info["name"], forced)
    return web.Response(status=204)


@routes.get("/server_options")
async def server_options(request: web.Request) -> web.Response:
    await authenticate(request)
    return web.json_response(request.app[SERVERS].options())


@routes.get("/logs/{name}")
async def server_logs(request: web.Request) -> web.Response:
    who = await authenticate(request)
    max_lines = int_param(request, "max_lines", 250, 1, MAX_LOG_LINES)
    text = await request.app[SERVERS].logs(who, request.match_info["name"], max_lines)
    return web.json_response({"jupyter-server": text})
