#!/usr/bin/env bash
# Builds wharf's container image on this machine, without internet access:
#
#   scripts/image.sh [TAG]        the image (default tag wharf:latest), with the local docker
#   scripts/image.sh --rootfs DIR only the image's files in DIR (the Dockerfile's build stage)
#
# The binary is static: cargo builds it for the gnu target with glibc linked in
# (`-C target-feature=+crt-static`), so it runs in an image FROM scratch. The image is the
# final stage of the Dockerfile at the root, used as it is with the files laid out here, and
# built with Docker's classic builder (DOCKER_BUILDKIT=0), which needs no image from outside.
# DOCKER names the docker client (default: docker); DOCKER_HOST and DOCKER_CONFIG apply.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "image.sh: $*" >&2; exit 1; }

# The image's unprivileged user; the Dockerfile's --chown and src/cli/entrypoint/run_as.rs
# name the same IDs.
WHARF_UID=65532

build_static() {
  # Run from `cargo test` (tests/e2e_image.rs), this script inherits the package variables cargo
  # exports to tests; a build that sees them is not fresh against one from a shell, and would
  # compile wharf again.
  local v
  for v in $(compgen -e | grep -E '^(CARGO_(PKG|MANIFEST|BIN_EXE|CRATE|PRIMARY|TARGET_TMPDIR)|__CARGO)' || true); do
    unset "$v"
  done
  local triple
  triple=$(rustc -vV | sed -n 's/^host: //p')
  case "$triple" in *-linux-gnu) ;; *) fail "expected a *-linux-gnu Rust host, got $triple" ;; esac
  local flags_var
  flags_var="CARGO_TARGET_$(echo "$triple" | tr 'a-z-' 'A-Z_')_RUSTFLAGS"
  # An explicit --target keeps the flag off build scripts and proc macros, which cannot be static.
  echo "image.sh: cargo build --profile image --target $triple (static)" >&2
  env "$flags_var=-C target-feature=+crt-static" \
    cargo build --locked --quiet --profile image --target "$triple" --bin wharf >&2
  BIN="target/$triple/image/wharf"
  if LC_ALL=C readelf -l "$BIN" 2>/dev/null | grep -q 'program interpreter'; then
    fail "$BIN is dynamically linked"
  fi
}

# The image's files: the binary under the names registry:2's image has (`/entrypoint`,
# `/bin/registry`, `htpasswd` on PATH), registry:2's stock configuration, the users, the data
# directory and /tmp.
stage_rootfs() {
  local dir=$1
  rm -rf "$dir"
  mkdir -p "$dir/usr/bin" "$dir/bin" "$dir/etc/docker/registry" "$dir/var/lib/registry" "$dir/tmp"
  install -m 0755 "$BIN" "$dir/usr/bin/wharf"
  ln -s wharf "$dir/usr/bin/htpasswd"
  ln -s ../usr/bin/wharf "$dir/bin/registry"
  ln -s usr/bin/wharf "$dir/entrypoint"
  install -m 0644 deploy/config.yml "$dir/etc/docker/registry/config.yml"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nwharf:x:%s:%s:wharf:/var/lib/registry:/sbin/nologin\n' \
    "$WHARF_UID" "$WHARF_UID" > "$dir/etc/passwd"
  printf 'root:x:0:\nwharf:x:%s:\n' "$WHARF_UID" > "$dir/etc/group"
  chmod 0644 "$dir/etc/passwd" "$dir/etc/group"
  chmod 1777 "$dir/tmp"
}

if [ "${1:-}" = "--rootfs" ]; then
  [ -n "${2:-}" ] || fail "--rootfs needs a directory"
  build_static
  stage_rootfs "$2"
  exit 0
fi

TAG=${1:-wharf:latest}
DOCKER=${DOCKER:-docker}
build_static
context=$(mktemp -d "${TMPDIR:-/tmp}/wharf-image.XXXXXX")
trap 'rm -rf "$context"' EXIT
stage_rootfs "$context/rootfs"
# The Dockerfile's final stage, reading the files from the context instead of the build stage.
sed -n '/^FROM scratch/,$p' Dockerfile | sed 's|--from=build \(.*\)/rootfs/|\1rootfs/|' > "$context/Dockerfile"
if grep -q -- '--from=build' "$context/Dockerfile" || ! grep -q '^COPY rootfs/ /$' "$context/Dockerfile"; then
  fail "the Dockerfile's final stage no longer copies --from=build /rootfs/; update image.sh"
fi
echo "image.sh: docker build -t $TAG" >&2
DOCKER_BUILDKIT=0 "$DOCKER" build --quiet -t "$TAG" "$context" >&2
size=$("$DOCKER" image inspect --format '{{.Size}}' "$TAG")
echo "image.sh: built $TAG ($((size / 1024)) KiB; the binary is $(file -b "$BIN" | grep -o 'static[-a-z]* linked'))" >&2
echo "$TAG"
