"""The servers API, in renku-notebooks' paths and shapes: start, list, inspect and stop one's own
notebook servers, choose from the server options, read a server's log."""

from __future__ import annotations

from aiohttp import web

from gateway.errors import BadRequest, NotFound
from gateway.schemas import ImageCheck, ServerList, ServerLogs, ServerRequest, VolumeList, parse
from gateway.web import views
from gateway.web.auth import authenticate, require_admin
from gateway.web.http import MAX_NOTIFICATION, flag, int_param, json_body
from gateway.web.keys import SERVERS

FILTERS = ("namespace", "project", "branch", "commit_sha")
DEFAULT_LOG_LINES = 250  # renku's default


async def start_server(request: web.Request) -> web.Response:
    who = await authenticate(request)
    body = parse(ServerRequest, await json_body(request, MAX_NOTIFICATION))
    server, created = await request.app[SERVERS].start(who, body)
    return views.answer(server, status=201 if created else 200)


async def list_servers(request: web.Request) -> web.Response:
    who = await authenticate(request)
    filters = {key: request.query[key] for key in FILTERS if key in request.query}
    return views.answer(ServerList(servers=await request.app[SERVERS].list_servers(who, filters)))


async def get_server(request: web.Request) -> web.Response:
    who = await authenticate(request)
    return views.answer(await request.app[SERVERS].get(who, request.match_info["name"]))


async def stop_server(request: web.Request) -> web.Response:
    who = await authenticate(request)
    forced = flag(request, "forced", default=False)
    remove = flag(request, "remove", default=False)  # the work area too (JupyterHub's word)
    await request.app[SERVERS].stop(who, request.match_info["name"], forced, remove)
    return web.Response(status=204)


async def list_volumes(request: web.Request) -> web.Response:
    require_admin(request)
    return views.answer(VolumeList(volumes=await request.app[SERVERS].volumes()))


async def remove_volume(request: web.Request) -> web.Response:
    require_admin(request)
    await request.app[SERVERS].remove_volume(request.match_info["name"])
    return web.Response(status=204)


async def server_options(request: web.Request) -> web.Response:
    await authenticate(request)
    return views.answer(request.app[SERVERS].options())


async def server_logs(request: web.Request) -> web.Response:
    who = await authenticate(request)
    # 0 is everything, as renku-ui asks for "full logs".
    max_lines = int_param(request, "max_lines", DEFAULT_LOG_LINES, 0, 2**31 - 1)
    name = request.match_info["name"]
    text = await request.app[SERVERS].logs(who, name, max_lines or None)
    return views.answer(ServerLogs.model_validate({"jupyter-server": text}))


async def check_image(request: web.Request) -> web.Response:
    """renku's image check: 200 when the image exists, may be pulled and may be chosen."""
    await authenticate(request)
    image = request.query.get("image_url", "")
    if not image:
        raise BadRequest("query parameter 'image_url' is required")
    reason = await request.app[SERVERS].image_status(image)
    if reason is not None:
        raise NotFound(reason)
    return views.answer(ImageCheck(image_url=image, available=True))
