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

    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args.env_file)
    return _traefik_config(args)


def _serve(env_file: Path) -> int:
    try:
        settings = Settings.from_env(os.environ, env_file)
    except ConfigError as exc:
        print(f"notebook-gateway: {exc}", file=sys.stderr)
        return 2
    # Imported here so `traefik-config` and `--help` stay fast and need no Docker.
    from aiohttp import web

    from gateway.redact import Redactor, configure_logging
    from gateway.web.app import create_app

    redact = Redactor(settings.secrets())
    configure_logging(settings.log_level, redact)
    try:
        web.run_app(
            create_app(settings),
            host=settings.gateway_host,
            port=settings.gateway_port,
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
