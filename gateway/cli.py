"""The `notebook-gateway` command."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gateway import __version__
from gateway.errors import ConfigError, GatewayError
from gateway.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="notebook-gateway",
        description="Turn a GitLab repository of Jupyter notebooks into running, routed notebooks.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run the HTTP API", description="Run the gateway's HTTP API."
    )
    serve.add_argument(
        "--env-file",
        type=Path,
        default=Path(".env"),
        help="read settings from this file too; the environment wins (default: .env)",
    )

    traefik = commands.add_parser(
        "traefik-config",
        help="write Traefik's static configuration",
        description="Write Traefik's static configuration (TOML) for routing to the notebooks.",
    )
    traefik.add_argument(
        "--output", "-o", default="traefik/traefik.toml", help="file to write, or - for stdout"
    )
    traefik.add_argument(
        "--network",
        default=os.environ.get("DOCKER_NETWORK") or "notebook-gateway",
        help="Docker network shared with the notebooks"
        " (default: $DOCKER_NETWORK or notebook-gateway)",
    )
    traefik.add_argument(
        "--runtime",
        choices=("docker", "swarm"),
        default=os.environ.get("RUNTIME") or "docker",
        help="where the notebooks run: the Docker or the Swarm provider"
        " (default: $RUNTIME or docker)",
    )
    traefik.add_argument(
        "--web-address", default=":80", help="web entrypoint address (default: :80)"
    )
    traefik.add_argument(
        "--ping-address", default=":8082", help="ping entrypoint address (default: :8082)"
    )
    traefik.add_argument(
        "--docker-endpoint", default="unix:///var/run/docker.sock", help="Docker API endpoint"
    )

    deploy = commands.add_parser(
        "deploy",
        help="publish a project and show its progress",
        description="Publish a project (a top-level folder of the notebooks repository) and\n"
        "follow the job until its notebooks answer. Exits 0 when every notebook runs,\n"
        "1 when the job failed, 3 when the gateway cannot be reached.",
        epilog=_CLIENT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    deploy.add_argument("project", help="the project's folder name, e.g. climate")
    deploy.add_argument(
        "--local",
        action="store_true",
        help="run the gateway in this process for this one deploy, from the same settings"
        " `serve` reads (for a machine where no gateway runs)",
    )
    deploy.add_argument(
        "--verbose", "-v", action="store_true", help="show build and push output too"
    )
    listing = commands.add_parser(
        "list",
        help="list projects, notebooks and servers",
        description="List every project and notebook with its state and link, the jobs\n"
        "under way, and users' servers.",
        epilog=_CLIENT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listing.add_argument("--json", action="store_true", help="print the gateway's JSON")
    logs = commands.add_parser(
        "logs",
        help="print a server's log",
        description="Print the recent log of a published notebook's container (its name,\n"
        "as `list` shows it in brackets) or of a user's server.",
        epilog=_CLIENT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    logs.add_argument("name", help="a container or server name")
    logs.add_argument("--lines", "-n", type=int, default=250, help="how many lines (default 250)")
    volumes = commands.add_parser(
        "volumes",
        help="list users' work areas, or remove one",
        description="List every user's work areas (one volume per user and project): whose,\n"
        "how big, which servers use them. --remove removes one no server uses (of a user\n"
        "who has gone, say): its files are gone for good.",
        epilog=_CLIENT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    volumes.add_argument("--remove", metavar="NAME", help="remove this work area")
    volumes.add_argument("--json", action="store_true", help="print the gateway's JSON")
    for command in (deploy, listing, logs, volumes):
        command.add_argument("--url", help="the gateway (default: $GATEWAY_URL)")
        command.add_argument("--token", help="the admin token (default: $AUTH_TOKEN)")
        command.add_argument(
            "--env-file", type=Path, default=Path(".env"), help="read settings from this file too"
        )

    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args.env_file)
    if args.command == "traefik-config":
        return _traefik_config(args)
    from gateway import console

    return console.run(args)


_CLIENT_EPILOG = """\
The gateway's URL and admin token come from --url and --token, else from GATEWAY_URL and
AUTH_TOKEN in the environment or the .env file, as `serve` reads them.

examples:
  notebook-gateway deploy climate
  notebook-gateway list
  notebook-gateway logs nbgw-intro--climate --lines 50
  notebook-gateway volumes --remove nbgw-work-alice-analysis-1a2b3c4d
"""


def _serve(env_file: Path) -> int:
    try:
        settings = Settings.from_env(os.environ, env_file)
    except ConfigError as exc:
        print(f"notebook-gateway: {exc}", file=sys.stderr)
        return 2
    # Imported here so `traefik-config` and `--help` stay fast and need no Docker.
    from aiohttp import web

    from gateway.logs import configure_logging
    from gateway.redact import Redactor
    from gateway.web.app import create_app

    redact = Redactor(settings.secrets())
    configure_logging(settings.log_level, redact, settings.log_format)
    try:
        web.run_app(
            create_app(settings),
            host=settings.gateway_host,
            port=settings.gateway_port,
            # Also the time a connection has to send a request's headers: half-sent ones
            # are cut off, not held for ever.
            keepalive_timeout=settings.http_timeout,
            lingering_time=settings.http_timeout,  # the rest of a body that came too slowly
            access_log_format='%a "%r" %s %b %Tfs',
            print=None,
        )
    except GatewayError as exc:  # e.g. no Docker engine at start-up
        print(f"notebook-gateway: cannot start: {redact(exc.message)}", file=sys.stderr)
        return 1
    return 0


def _traefik_config(args: argparse.Namespace) -> int:
    import tomli_w

    from gateway.traefik import static_config, write_static_config

    config = static_config(
        network=args.network,
        runtime=args.runtime,
        web_address=args.web_address,
        ping_address=args.ping_address,
        docker_endpoint=args.docker_endpoint,
    )
    if args.output == "-":
        sys.stdout.write(tomli_w.dumps(config))
    else:
        write_static_config(config, Path(args.output))
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
