#!/usr/bin/env bash
# Provision the real parts the gateway runs against, idempotently, on a Debian/Ubuntu host as root:
# Docker engine (started here), the Distribution registry and debootstrap packages, and the local
# Jupyter base image. Usage: scripts/stack.sh [python|packages|dockerd|base-image|all]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STACK_DIR=${STACK_DIR:-$ROOT/.stack}
BASE_IMAGE=${BASE_IMAGE:-notebook-gateway/base:latest}
ROOTFS_IMAGE=notebook-gateway/bookworm-rootfs:latest
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The legacy builder: Debian's engine has no BuildKit, and newer CLIs default to it.
export DOCKER_BUILDKIT=0
mkdir -p "$STACK_DIR"

log() { printf '==> %s\n' "$*" >&2; }

apt_install() {
  log "installing $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# What `make` needs before anything else: Python 3.11+ with venv, git and curl.
python_tools() {
  local missing=()
  command -v python3 >/dev/null || missing+=(python3)
  command -v git >/dev/null || missing+=(git)
  command -v curl >/dev/null || missing+=(curl)
  python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    log "notebook-gateway needs Python 3.11 or newer; python3 is $(python3 -V 2>&1)"
    return 1
  }
}

packages() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v docker-registry >/dev/null || missing+=(docker-registry)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  # The README's compose steps, run by a test: Compose 1.29 and htpasswd.
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  command -v htpasswd >/dev/null || missing+=(apache2-utils)
  # The two-node Swarm tests: a network namespace and a veth link for the second engine.
  command -v ip >/dev/null || missing+=(iproute2)
  command -v nsenter >/dev/null || missing+=(util-linux)
  # Headless Chromium for the status page's browser test (Playwright drives it).
  command -v chromium >/dev/null || missing+=(chromium fonts-dejavu-core)
  [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

# The two-node Swarm tests run a registry on the manager's end of a veth link to a second engine
# (TEST_NODES_CIDR, on this machine only); every engine of the test Swarm must pull from it
# without TLS, as the README asks of a registry without a certificate.
TEST_NODES_CIDR=10.77.0.0/24

insecure_registry_configured() {
  python3 - "$TEST_NODES_CIDR" <<'EOF'
import json, pathlib, sys
path = pathlib.Path("/etc/docker/daemon.json")
config = json.loads(path.read_text()) if path.exists() else {}
listed = config.setdefault("insecure-registries", [])
if sys.argv[1] not in listed:
    listed.append(sys.argv[1])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
EOF
}

engine_allows_test_registry() {
  docker info 2>/dev/null | grep -qx " *${TEST_NODES_CIDR}"
}

dockerd_up() {
  insecure_registry_configured
  if docker version >/dev/null 2>&1; then
    engine_allows_test_registry && return 0
    # insecure-registries is one of the settings a running engine reloads on SIGHUP.
    log "reloading dockerd's configuration (insecure-registries $TEST_NODES_CIDR)"
    kill -HUP "$(cat /var/run/docker.pid)"
    for _ in $(seq 1 20); do
      engine_allows_test_registry && return 0
      sleep 0.5
    done
    log "dockerd did not take insecure-registries from /etc/docker/daemon.json; restart it"
    return 1
  fi
  log "starting dockerd (log: $STACK_DIR/dockerd.log)"
  # A pid file left by a killed daemon makes the next one refuse to start.
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    rm -f /var/run/docker.pid
  fi
  setsid nohup dockerd >"$STACK_DIR/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    docker version >/dev/null 2>&1 && return 0
    sleep 1
  done
  log "dockerd did not answer within 60 s; last log lines:"
  tail -n 20 "$STACK_DIR/dockerd.log" >&2
  return 1
}

base_image() {
  # The tag carries a hash of the base image's definition, so editing it triggers a rebuild.
  local digest tag
  digest=$(cat "$ROOT/images/base/Dockerfile" /etc/ssl/certs/ca-certificates.crt | sha256sum | cut -c1-12)
  tag="${BASE_IMAGE%:*}:$digest"
  if docker image inspect "$tag" >/dev/null 2>&1; then
    docker tag "$tag" "$BASE_IMAGE"
    return 0
  fi
  if ! docker image inspect "$ROOTFS_IMAGE" >/dev/null 2>&1; then
    local rootfs
    rootfs=$(mktemp -d)
    log "debootstrap bookworm into $rootfs (about a minute)"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$rootfs" "$DEBIAN_MIRROR" >"$STACK_DIR/debootstrap.log" 2>&1 \
      || { tail -n 20 "$STACK_DIR/debootstrap.log" >&2; rm -rf "$rootfs"; return 1; }
    tar -C "$rootfs" -c . | docker import - "$ROOTFS_IMAGE" >/dev/null
    rm -rf "$rootfs"
  fi
  local context
  context=$(mktemp -d)
  cp "$ROOT/images/base/Dockerfile" "$context/"
  cp /etc/ssl/certs/ca-certificates.crt "$context/"
  log "building $tag"
  docker build -q -t "$tag" -t "$BASE_IMAGE" "$context" >/dev/null
  rm -rf "$context"
}

case "${1:-all}" in
  python) python_tools ;;
  packages) packages ;;
  dockerd) dockerd_up ;;
  base-image) base_image ;;
  all) python_tools; packages; dockerd_up; base_image ;;
  *) echo "usage: $0 [python|packages|dockerd|base-image|all]" >&2; exit 2 ;;
esac
