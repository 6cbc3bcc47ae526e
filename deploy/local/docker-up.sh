#!/usr/bin/env bash
# Docker Engine for container sessions and their tests: install it if missing, start dockerd if it does
# not answer, import the local test image if missing. Idempotent; well under a second when all is up.
#
# No registry is reachable here, so the image is built from Debian's static busybox with `docker import`:
# `sh`, `yes` and `dd` are all a session needs to burn CPU and hold memory (tmpfs pages are charged to
# the container's memory cgroup). dockerd runs with the flags DESIGN.md names: no iptables, no default
# bridge (containers use `--network none` or a user-defined network), cgroupfs driver (container cgroups
# at <controller>/docker/<id>, read by the agent's cgroup collectors), overlay2 (vfs if overlay2 fails).
set -euo pipefail

IMAGE=${PSPE_DOCKER_IMAGE:-pspe-busybox:1}
LOG=${PSPE_DOCKERD_LOG:-/var/log/pspe-dockerd.log}
FLAGS=(--iptables=false --bridge=none --exec-opt native.cgroupdriver=cgroupfs)

answering() { docker info >/dev/null 2>&1; }

install_missing() {
  local want=()
  command -v dockerd >/dev/null || want+=(docker.io)
  dpkg -s busybox-static >/dev/null 2>&1 || want+=(busybox-static)
  [ ${#want[@]} -eq 0 ] && return 0
  echo "docker-up: installing ${want[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${want[@]}" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${want[@]}" >/dev/null
  }
}

start_dockerd() {
  local driver=$1
  echo "docker-up: starting dockerd (storage driver $driver, log $LOG)"
  setsid -f dockerd "${FLAGS[@]}" --storage-driver="$driver" </dev/null >>"$LOG" 2>&1
  for _ in $(seq 1 60); do
    answering && return 0
    pgrep -x dockerd >/dev/null || return 1   # it gave up (e.g. the storage driver does not work here)
    sleep 1
  done
  return 1
}

import_image() {
  local root
  root=$(mktemp -d)
  mkdir -p "$root"/{bin,dev,etc,proc,sys,tmp}
  cp /bin/busybox "$root/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
  done
  echo "root:x:0:0:root:/:/bin/sh" >"$root/etc/passwd"
  tar -C "$root" -c . | docker import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' - "$IMAGE" >/dev/null
  rm -rf "$root"
  echo "docker-up: imported $IMAGE"
}

install_missing
if ! answering; then
  start_dockerd overlay2 || { echo "docker-up: overlay2 failed, trying vfs" >&2; start_dockerd vfs; } || {
    echo "docker-up: dockerd did not come up; see $LOG" >&2
    exit 1
  }
fi
docker image inspect "$IMAGE" >/dev/null 2>&1 || import_image
echo "docker-up: Docker $(docker version --format '{{.Server.Version}}') is answering, image $IMAGE present"
