#!/usr/bin/env bash
# `make demo`: the whole gateway on this machine, on the bundled example notebooks.
# Starts a registry, Traefik and the gateway on loopback (logs and pids in .demo/), publishes
# every example project, and prints the notebook URLs and URL.md. `make demo-stop` undoes it.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEMO_DIR=${DEMO_DIR:-$ROOT/.demo}
BIN=$ROOT/.venv/bin
HTTP_PORT=${DEMO_HTTP_PORT:-8080}
GATEWAY_PORT=${DEMO_GATEWAY_PORT:-3000}
REGISTRY_PORT=${DEMO_REGISTRY_PORT:-5000}
GITLAB_PORT=${DEMO_GITLAB_PORT:-8929}
NETWORK=notebook-gateway-demo
INSTANCE=demo
BASE_IMAGE=${BASE_IMAGE:-notebook-gateway/base:latest}

log() { printf '==> %s\n' "$*" >&2; }

start_bg() {  # name, command...
  local name=$1; shift
  setsid nohup "$@" >"$DEMO_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$DEMO_DIR/$name.pid"
}

stop_bg() {
  local pidfile=$DEMO_DIR/$1.pid
  [ -f "$pidfile" ] || return 0
  local pid; pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

wait_http() {  # name, url, seconds
  for _ in $(seq 1 $(( $3 * 5 ))); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$2" || true)
    case "$code" in 200|401) return 0 ;; esac
    sleep 0.2
  done
  log "$1 did not answer at $2; its log:"; tail -n 30 "$DEMO_DIR/$1.log" >&2; return 1
}

down() {
  for name in gateway traefik registry gitlab; do stop_bg "$name"; done
  local ids
  ids=$(docker ps -aq --filter "label=notebook-gateway.instance=$INSTANCE" 2>/dev/null || true)
  [ -z "$ids" ] || docker rm -f -v $ids >/dev/null
  # The engine removes a parent image (a project's environment) only after its children:
  # repeat while that frees more.
  local left=""
  for _ in 1 2 3 4 5; do
    ids=$(docker images -q --filter "label=notebook-gateway.instance=$INSTANCE" 2>/dev/null | sort -u || true)
    { [ -z "$ids" ] || [ "$ids" = "$left" ]; } && break
    docker rmi -f $ids >/dev/null 2>&1 || true
    left=$ids
  done
  docker network rm "$NETWORK" >/dev/null 2>&1 || true
}

seed_repository() {
  rm -rf "$DEMO_DIR/notebooks.git" "$DEMO_DIR/author"
  git init --quiet --bare --initial-branch=main "$DEMO_DIR/notebooks.git"
  git clone --quiet "$DEMO_DIR/notebooks.git" "$DEMO_DIR/author" 2>/dev/null
  cp -R "$ROOT/examples/notebooks/." "$DEMO_DIR/author/"
  git -C "$DEMO_DIR/author" checkout --quiet -B main
  git -C "$DEMO_DIR/author" add -A
  git -C "$DEMO_DIR/author" -c user.name="Demo Author" -c user.email=author@example.org \
    commit --quiet -m "Example notebooks"
  git -C "$DEMO_DIR/author" push --quiet origin main
}

up() {
  down
  mkdir -p "$DEMO_DIR/registry"
  local password token
  password=$("$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(18))')
  token=$("$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(24))')

  log "registry on 127.0.0.1:$REGISTRY_PORT (htpasswd auth)"
  "$BIN/python" -c 'import bcrypt, sys; print("demo:" + bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt()).decode())' \
    "$password" >"$DEMO_DIR/registry/htpasswd"
  cat >"$DEMO_DIR/registry/config.yml" <<YAML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $DEMO_DIR/registry/data}
  delete: {enabled: true}
http: {addr: "127.0.0.1:$REGISTRY_PORT", secret: "$token"}
auth:
  htpasswd: {realm: notebook-gateway-demo, path: $DEMO_DIR/registry/htpasswd}
YAML
  start_bg registry docker-registry serve "$DEMO_DIR/registry/config.yml"
  wait_http registry "http://127.0.0.1:$REGISTRY_PORT/v2/" 30

  log "Traefik on 127.0.0.1:$HTTP_PORT"
  "$BIN/notebook-gateway" traefik-config --network "$NETWORK" \
    --web-address "127.0.0.1:$HTTP_PORT" --ping-address 127.0.0.1:18082 -o "$DEMO_DIR/traefik.toml"
  start_bg traefik "$BIN/traefik" --configFile="$DEMO_DIR/traefik.toml"
  wait_http traefik http://127.0.0.1:18082/ping 30

  log "example repository from examples/notebooks"
  seed_repository

  log "a stand-in GitLab on 127.0.0.1:$GITLAB_PORT (user 'demo', project demo/examples)"
  rm -rf "$DEMO_DIR/gitlab" "$DEMO_DIR/gitlab-user"
  start_bg gitlab "$BIN/python" "$ROOT/scripts/demo_gitlab.py" "$DEMO_DIR/gitlab" "$GITLAB_PORT" "$DEMO_DIR/gitlab-user"
  wait_http gitlab "http://127.0.0.1:$GITLAB_PORT/api/v4/user" 30

  cat >"$DEMO_DIR/gateway.env" <<ENV
AUTH_TOKEN=$token
GATEWAY_URL=http://localhost:$GATEWAY_PORT
GATEWAY_HOST=127.0.0.1
GATEWAY_PORT=$GATEWAY_PORT
GITLAB_REPO_URL=file://$DEMO_DIR/notebooks.git
GIT_BRANCH=main
REGISTRY_HOST=127.0.0.1:$REGISTRY_PORT
REGISTRY_USERNAME=demo
REGISTRY_PASSWORD=$password
BASE_IMAGE=$BASE_IMAGE
BASE_DOMAIN=localhost
PUBLIC_PORT=$HTTP_PORT
TRAEFIK_URL=http://127.0.0.1:$HTTP_PORT
DOCKER_NETWORK=$NETWORK
GATEWAY_INSTANCE=$INSTANCE
STATE_DIR=$DEMO_DIR/state
GITLAB_URL=http://127.0.0.1:$GITLAB_PORT
GATEWAY_INTERNAL_URL=http://127.0.0.1:$GATEWAY_PORT
ENV
  chmod 600 "$DEMO_DIR/gateway.env"
  log "gateway on http://localhost:$GATEWAY_PORT"
  start_bg gateway "$BIN/notebook-gateway" serve --env-file "$DEMO_DIR/gateway.env"
  wait_http gateway "http://127.0.0.1:$GATEWAY_PORT/health" 60

  # The client commands read the gateway's address and token from the environment.
  export GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT" AUTH_TOKEN="$token"
  local project
  for project in $(cd "$ROOT/examples/notebooks" && find . -mindepth 1 -maxdepth 1 -type d ! -name '.*' -printf '%f\n' | sort); do
    log "notebook-gateway deploy $project   (POST /projects, then its progress as it happens)"
    if ! "$BIN/notebook-gateway" deploy "$project" --env-file /dev/null; then
      log "deploying $project failed; gateway log: $DEMO_DIR/gateway.log"; return 1
    fi
  done

  echo
  echo "Published notebooks (notebook-gateway list; open them in a browser, or: curl -sL URL):"
  "$BIN/notebook-gateway" list --env-file /dev/null | sed 's/^/  /'
  echo
  echo "URL.md, as committed to the example repository ($DEMO_DIR/notebooks.git):"
  echo
  git --git-dir "$DEMO_DIR/notebooks.git" show main:URL.md | sed 's/^/    /'
  echo
  start_server
  echo "The status page: http://localhost:$GATEWAY_PORT/ (log in there with AUTH_TOKEN to deploy and watch)."
  echo "The API token is in $DEMO_DIR/gateway.env. Stop everything with: make demo-stop"
}

start_server() {
  # The servers API: the stand-in GitLab's user starts a server of their own.
  local user_token commit name url
  user_token=$(sed -n 1p "$DEMO_DIR/gitlab-user")
  commit=$(sed -n 2p "$DEMO_DIR/gitlab-user")
  log "POST /servers as GitLab user 'demo' (demo/examples at ${commit:0:8}, opening climate/intro.ipynb)"
  curl -fsS -o "$DEMO_DIR/server.json" -X POST "http://127.0.0.1:$GATEWAY_PORT/servers" \
    -H "Authorization: Bearer $user_token" -H "Content-Type: application/json" \
    -d "{\"namespace\": \"demo\", \"project\": \"examples\", \"commit_sha\": \"$commit\", \"notebook\": \"climate/intro.ipynb\"}"
  name=$("$BIN/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["name"])' "$DEMO_DIR/server.json")
  for _ in $(seq 1 180); do
    curl -fsS -o "$DEMO_DIR/server.json" "http://127.0.0.1:$GATEWAY_PORT/servers/$name" -H "Authorization: Bearer $user_token"
    state=$("$BIN/python" -c 'import json,sys; s=json.load(open(sys.argv[1]))["status"]; print(s["state"], s["message"])' "$DEMO_DIR/server.json")
    case "$state" in running*) break ;; failed*) log "the server failed: $state"; return 1 ;; esac
    sleep 1
  done
  url=$("$BIN/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$DEMO_DIR/server.json")
  echo
  echo "A server of GitLab user 'demo' (servers API), guarded at Traefik:"
  echo "  $url"
  echo "  Open it in a browser and log in with the token in $DEMO_DIR/gitlab-user (first line),"
  echo "  or: curl -s ${url}api -H \"Authorization: Bearer \$(head -1 $DEMO_DIR/gitlab-user)\""
  echo "  Without it: curl -s -o /dev/null -w '%{http_code}\\n' ${url}api   # 401"
  echo
}

case "${1:-up}" in
  up) up ;;
  down) down; log "demo stopped" ;;
  *) echo "usage: $0 [up|down]" >&2; exit 2 ;;
esac
