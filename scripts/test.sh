#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, then format, lint, tests,
# the CLI contract and the fuzz target build. CI (`.ci/run`) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s ==\n' "$*"; }

# Debian packages the suites use. The dataplane suite (nftables, iproute2, CNI plugins) joins this
# list when it lands; today only python3-yaml is needed, for the external contract check.
packages=(python3-yaml)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

log "cargo fmt --check"
cargo fmt --all --check

log "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

log "cargo test"
cargo test --workspace

log "CLI contract check on the project's conformance scenarios"
cargo build -p bulkhead-cli
python3 tools/contract_check.py target/debug/bulkhead tests/conformance

log "fuzz target builds"
if cargo +nightly --version >/dev/null 2>&1; then
  command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
  (cd fuzz && cargo +nightly fuzz build --dev)
else
  echo "no nightly toolchain: the fuzz target needs it (cargo +nightly fuzz build)" >&2
  exit 1
fi

log "all green"
