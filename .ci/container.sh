#!/bin/sh
# CI: build the mediabot image and run `mediabot check`, `mediabot demo` and `mediabot health` inside it.
#
# No Docker engine runs here: buildah builds and runs with --isolation chroot. The base image is a
# Debian bookworm minbase with python3 + python3-venv made by debootstrap and `podman import`,
# cached as a tarball under .ci/cache/ (git-ignored) and as an image in local container storage,
# so only the first run pays for it.
set -eu
cd "$(dirname "$0")/.."

CACHE=${MEDIABOT_CI_CACHE:-.ci/cache}
BASE_IMAGE=${MEDIABOT_CI_BASE:-localhost/mediabot-base:bookworm-py3}
IMAGE=${MEDIABOT_CI_IMAGE:-localhost/mediabot:ci}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CA=/etc/ssl/certs/ca-certificates.crt
BASE_TAR="$CACHE/bookworm-minbase-python3.tar"

say() { printf '%s container: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }
step_start() { step_t0=$(date +%s); say "$1 ..."; }
step_done() { say "$1 done in $(( $(date +%s) - step_t0 )) s"; }
total_t0=$(date +%s)

# ---------------------------------------------------------------- tools
missing=""
for tool in buildah podman debootstrap; do
  command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
  step_start "installing$missing with apt-get"
  [ "$(id -u)" = 0 ] || die "need root to apt-get install$missing"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null; then
    apt-get update -q >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null \
      || die "apt-get install$missing failed"
  fi
  step_done "install"
fi
[ -r "$CA" ] || die "no CA bundle at $CA (pip inside the build needs it to reach the package index)"

# ---------------------------------------------------------------- base image (cached)
mkdir -p "$CACHE"
if buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
  say "base image $BASE_IMAGE present (cached)"
else
  if [ ! -s "$BASE_TAR" ]; then
    step_start "debootstrap bookworm minbase + python3 python3-venv"
    rootfs=$(mktemp -d /tmp/mediabot-rootfs.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
      || { tail -n 20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }
    # Smaller, reproducible-ish base: drop apt lists and caches.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/tmp/*
    tar -C "$rootfs" -cf "$BASE_TAR.tmp" . || die "cannot write $BASE_TAR"
    mv "$BASE_TAR.tmp" "$BASE_TAR"
    rm -rf "$rootfs"
    trap - EXIT
    step_done "debootstrap"
  fi
  step_start "podman import $BASE_TAR as $BASE_IMAGE"
  podman import --change 'CMD ["/bin/bash"]' "$BASE_TAR" "$BASE_IMAGE" >/dev/null \
    || die "podman import failed"
  step_done "import"
fi

# ---------------------------------------------------------------- build
step_start "buildah bud $IMAGE (BASE=$BASE_IMAGE)"
# --format docker: the OCI image format has no HEALTHCHECK and buildah would drop it.
buildah bud --isolation chroot --format docker --layers --pull-never \
  --build-arg "BASE=$BASE_IMAGE" \
  --volume "$CA:$CA:ro" \
  -t "$IMAGE" -f Dockerfile . >"$CACHE/build.log" 2>&1 \
  || { tail -n 40 "$CACHE/build.log" >&2; die "image build failed (log: $CACHE/build.log)"; }
step_done "build"
buildah inspect --type image --format '{{.Docker.Config.Healthcheck.Test}}' "$IMAGE" | grep -q health \
  || die "the image has no HEALTHCHECK"

# ---------------------------------------------------------------- run inside the image
ctr=$(buildah from --pull-never "$IMAGE") || die "buildah from $IMAGE failed"
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
in_image() { buildah run --isolation chroot "$ctr" -- "$@"; }

[ "$(in_image id -u)" != 0 ] || die "the image runs as root; it must use the non-root user"
in_image sh -c 'for t in gcc cc make pip pip3; do ! command -v "$t" >/dev/null || exit 1; done' \
  || die "the final image contains build tools (gcc/make/pip)"

step_start "mediabot check (in the image)"
in_image mediabot check || die "\`mediabot check\` failed inside the image"
step_done "check"

step_start "mediabot demo (in the image)"
out=$(in_image mediabot demo 2>&1) || { printf '%s\n' "$out" >&2; die "\`mediabot demo\` failed inside the image"; }
printf '%s\n' "$out" | tail -n 4 >&2
printf '%s\n' "$out" | grep -q "second poll: 0 new, 0 alerts" || die "demo output lacks the expected summary"
step_done "demo"

step_start "mediabot health (in the image, no HTTP: the /app/state volume must be writable)"
in_image mediabot health || die "\`mediabot health\` failed inside the image"
step_done "health"

# Drop images that earlier runs left untagged; the base and the layer cache of this build stay.
podman image prune -f >/dev/null 2>&1 || true
say "OK in $(( $(date +%s) - total_t0 )) s"
