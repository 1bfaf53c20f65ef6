#!/usr/bin/env bash
# The production image, built and run: `./run container` (and `.ci/run`) call this.
#
# It needs root: it starts a private Docker daemon (Debian's docker.io; its own socket, data root
# and exec root, no bridge, no iptables or ip-forward changes), stops it on exit, builds the
# Dockerfile unchanged on a Debian base made here with debootstrap (image registries are out of
# reach), and runs tests/container/e2e.py: valkey, the simulators, the api, a worker and a
# verifying receiver in containers sharing one network namespace, the api and worker under the
# rendered chart's security settings.
#
# Anything missing (not root, docker.io or debootstrap not installable, the daemon not starting)
# is a failure, never a skip: CI must not turn green without having run the image.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${RELAY_CI_CACHE:-/var/cache/relay-ci}"   # kept between runs: base tarball, data root
RUNDIR="${RELAY_CI_RUNDIR:-/run/relay-ci}"       # per-run: socket, exec root, pid file
IMAGE="${RELAY_CI_IMAGE:-run-relay:ci}"
DOCKER=/usr/bin/docker       # docker.io's own client: it can build `RUN --mount` (BuildKit)
DOCKERD=/usr/sbin/dockerd
export DOCKER_HOST="unix://$RUNDIR/docker.sock"
export DOCKER_BUILDKIT=1

fail() { echo "container: FAILED: $*" >&2; exit 1; }
T0=$(date +%s.%N)
declare -a TIMINGS=()
phase_start() { PHASE="$1"; PHASE_T=$(date +%s.%N); echo "container: -- $1"; }
phase_end() {
  local took; took=$(awk -v a="$PHASE_T" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  TIMINGS+=("$(printf '%-22s %7ss' "$PHASE" "$took")")
  echo "container: -- $PHASE done in ${took}s"
}

[ "$(id -u)" = 0 ] || fail "needs root (a private dockerd, debootstrap); run it as root or in CI"
[ -x .venv/bin/python ] || fail ".venv missing: call this through ./run container"
mkdir -p "$CACHE" "$RUNDIR"
exec 9>"$CACHE/lock"
flock -w 600 9 || fail "another container run holds $CACHE/lock"

# ------------------------------------------------------------------------------------- packages
phase_start packages
if [ ! -x "$DOCKER" ] || [ ! -x "$DOCKERD" ] || ! command -v debootstrap >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null >/dev/null || fail "apt-get update"
  apt-get install -y -qq --no-install-recommends docker.io debootstrap </dev/null >/dev/null \
    || fail "apt-get install docker.io debootstrap"
fi
[ -x "$DOCKER" ] && [ -x "$DOCKERD" ] || fail "docker.io did not install $DOCKER and $DOCKERD"
phase_end

# ------------------------------------------------------------------------------- private dockerd
phase_start dockerd
stop_dockerd() {
  local pid
  pid=$(cat "$RUNDIR/docker.pid" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}
stop_dockerd   # one left behind by a killed run of this script (same pid file)
cleanup() {
  local rc=$?
  if [ -n "${TIMINGS[*]:-}" ]; then
    echo "container: timings"; printf '  %s\n' "${TIMINGS[@]}"
  fi
  "$DOCKER" ps -aq --filter label=relay-ci 2>/dev/null | xargs -r "$DOCKER" rm -f >/dev/null 2>&1 || true
  stop_dockerd
  if [ "$rc" != 0 ]; then
    echo "container: FAILED (exit $rc); daemon log tail:" >&2
    tail -n 20 "$RUNDIR/dockerd.log" >&2 2>/dev/null || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$CACHE/docker" "$RUNDIR/exec"
"$DOCKERD" --host "$DOCKER_HOST" --data-root "$CACHE/docker" --exec-root "$RUNDIR/exec" \
  --pidfile "$RUNDIR/docker.pid" --bridge=none --iptables=false --ip6tables=false \
  --ip-forward=false --ip-masq=false --userland-proxy=false \
  --containerd-namespace relay-ci --containerd-plugins-namespace relay-ci-plugins \
  </dev/null >"$RUNDIR/dockerd.log" 2>&1 &
for _ in $(seq 1 150); do
  "$DOCKER" version >/dev/null 2>&1 && break
  kill -0 $! 2>/dev/null || fail "dockerd exited: $(tail -n 5 "$RUNDIR/dockerd.log")"
  sleep 0.2
done
"$DOCKER" version >/dev/null 2>&1 || fail "dockerd did not answer on $DOCKER_HOST within 30 s"
phase_end

# ---------------------------------------------------------------------------------- base image
# FOR TESTS ONLY, NEVER PUBLISHED: a stand-in for python:3.11-slim-bookworm (whose registry is out
# of reach here), made with debootstrap from the Debian archive apt already uses. It carries this
# machine's CA bundle (so pip in the build stage reaches the package index through whatever TLS
# interception the machine has), so the image built on it must not leave the machine either.
phase_start base
PACKAGES=python3,python3-pip,python3-venv,python-is-python3,ca-certificates
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
[ -r "$CA_BUNDLE" ] || fail "no CA bundle at $CA_BUNDLE"
MIRROR=$(apt-cache policy 2>/dev/null \
  | awk -v arch="$(dpkg --print-architecture)" '$3 == "bookworm/main" && $4 == arch {print $2; exit}')
if [ -z "$MIRROR" ]; then
  apt-get update -qq </dev/null >/dev/null || true
  MIRROR=$(apt-cache policy 2>/dev/null \
    | awk -v arch="$(dpkg --print-architecture)" '$3 == "bookworm/main" && $4 == arch {print $2; exit}')
fi
[ -n "$MIRROR" ] || fail "no bookworm/main source in apt's configuration"
RECIPE=$(printf '%s\n' "v1 minbase bookworm $PACKAGES $MIRROR" "$(sha256sum < "$CA_BUNDLE")" \
  | sha256sum | cut -c1-12)
BASE="relay-ci/python-base:bookworm-$RECIPE"
TARBALL="$CACHE/python-base-bookworm-$RECIPE.tar"
if "$DOCKER" image inspect "$BASE" >/dev/null 2>&1; then
  echo "container: base $BASE kept from an earlier run"
else
  if [ ! -s "$TARBALL" ]; then
    command -v debootstrap >/dev/null 2>&1 || fail "debootstrap is not installed"
    rm -rf "$CACHE"/rootfs.*   # left by a run killed during debootstrap (we hold the lock)
    ROOTFS=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    echo "container: debootstrap bookworm from $MIRROR"
    debootstrap --variant=minbase --include="$PACKAGES" bookworm "$ROOTFS" "$MIRROR" \
      >"$RUNDIR/debootstrap.log" 2>&1 || { tail -n 20 "$RUNDIR/debootstrap.log" >&2; fail debootstrap; }
    cp "$CA_BUNDLE" "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
    # Like the python image: pip may install into the system interpreter (no PEP 668 marker).
    rm -f "$ROOTFS"/usr/lib/python3*/EXTERNALLY-MANAGED
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/tmp/*
    tar --numeric-owner -C "$ROOTFS" -cf "$TARBALL.part" .
    mv "$TARBALL.part" "$TARBALL"
    rm -rf "$ROOTFS"
    find "$CACHE" -maxdepth 1 -name 'python-base-bookworm-*.tar' ! -path "$TARBALL" -delete
  fi
  "$DOCKER" import \
    --change 'LABEL org.opencontainers.image.description="relay CI base: for tests only, never published"' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    "$TARBALL" "$BASE" >/dev/null
fi
phase_end

# ------------------------------------------------------------------------------------- build
phase_start build
# The build stage's `pip wheel` needs the package index: the daemon has no bridge, so the build
# shares the host's network (the running containers below never do).
"$DOCKER" build --network host --progress plain --build-arg "PYTHON_IMAGE=$BASE" \
  --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  -t "$IMAGE" . >"$RUNDIR/build.log" 2>&1 || { tail -n 40 "$RUNDIR/build.log" >&2; fail "docker build"; }
phase_end

# ------------------------------------------------------------------------------------- e2e
phase_start e2e
.venv/bin/python tests/container/e2e.py --docker "$DOCKER" --image "$IMAGE"
phase_end

# dangling layers of earlier builds: keep the data root from growing run after run
"$DOCKER" image prune -f >/dev/null 2>&1 || true
echo "container: OK in $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s"
