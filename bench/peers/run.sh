#!/usr/bin/env bash
# Bulkhead vs network-config-analyzer on the generated S and M clusters (issue 4).
# Installs the peer from PyPI into a throwaway venv, builds Bulkhead in release mode, runs both.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="$(mktemp -d)/nca-venv"
trap 'rm -rf "$(dirname "$venv")"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet network-config-analyzer==2.1.0
cargo build --release -p bulkhead-cli -p bulkhead-bench
python3 bench/peers/compare_nca.py target/release/bulkhead target/release/bulkhead-bench "$venv/bin/nca" "${1:-S,M}"
