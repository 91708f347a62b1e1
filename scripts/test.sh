#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, then format, lint, tests,
# the CLI contract and the fuzz target build. CI (`.ci/run`) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
# The steps below name build outputs by path (the contract check runs target/debug/bulkhead,
# the fuzz seeds run fuzz/target/.../TARGET); a CARGO_TARGET_DIR from the environment would
# move them.
unset CARGO_TARGET_DIR

log() { printf '\n== %s ==\n' "$*"; }

# Debian packages the suites use: the privileged dataplane suite needs nftables, iproute2, the
# CNI plugins, conntrack and ping; the external contract check needs python3-yaml; the HTML
# report and `bulkhead serve` are tested in Debian's headless Chromium (driven through chromium-driver).
# deploy/'s image is built without Docker: mmdebstrap and umoci; deploy/monitoring's alerts are
# checked and unit-tested with promtool (Debian's prometheus package).
packages=(nftables iproute2 containernetworking-plugins conntrack iputils-ping python3-yaml chromium chromium-driver mmdebstrap umoci prometheus)
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

# The official SARIF 2.1.0 JSON schema, from the npm registry (Microsoft's sarif-matcher-utils
# ships it), so the CLI suite validates `check -o sarif` against it instead of skipping.
schema_dir=target/sarif-schema
if [ ! -s "$schema_dir/sarif-2.1.0-rtm.5.json" ]; then
  log "fetching the SARIF 2.1.0 schema"
  command -v npm >/dev/null 2>&1 || {
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq npm
  }
  mkdir -p "$schema_dir"
  (cd "$schema_dir" \
    && npm pack -q @microsoft/sarif-matcher-utils@1.0.0-beta.0 >/dev/null \
    && tar xzf microsoft-sarif-matcher-utils-1.0.0-beta.0.tgz package/lib/schemas/sarif-2.1.0-rtm.5.json \
    && mv package/lib/schemas/sarif-2.1.0-rtm.5.json . && rm -rf package ./*.tgz)
fi
# Debian's kubectl (package kubernetes-client) checks the loopback API server double. It is
# unpacked into target/ rather than installed: another package may own /usr/bin/kubectl.
kubectl_root=target/kubectl-debian
if [ ! -x "$kubectl_root/usr/bin/kubectl" ]; then
  log "unpacking Debian's kubernetes-client (kubectl)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  apt-cache show kubernetes-client >/dev/null 2>&1 || $SUDO apt-get update -qq
  mkdir -p "$kubectl_root"
  (cd "$kubectl_root" && apt-get download -q kubernetes-client 2>/dev/null \
    && dpkg-deb -x kubernetes-client_*.deb . && rm -f kubernetes-client_*.deb)
fi
export BULKHEAD_KUBECTL="$PWD/$kubectl_root/usr/bin/kubectl"
export BULKHEAD_REQUIRE_KUBECTL=1
export BULKHEAD_REQUIRE_SARIF_SCHEMA=1
export BULKHEAD_REQUIRE_CHROMIUM=1

# README's first command, exactly as written: a new user runs it before anything else.
log "README's first command: cargo run --release -p bulkhead-cli -- demo"
mkdir -p target
cargo run --release -p bulkhead-cli -- demo > target/demo-output.txt
grep -q "== 1. bulkhead check" target/demo-output.txt

# No GPL-family dependency (deny.toml): the dataplane talks to the kernel without one.
log "cargo deny check licenses"
command -v cargo-deny >/dev/null 2>&1 || cargo install --locked cargo-deny@0.20.2
cargo deny check licenses

log "cargo fmt --check"
cargo fmt --all --check

log "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

log "cargo test (all crates but the CLI)"
BULKHEAD_REQUIRE_PRIVILEGED=1 cargo test --workspace --exclude bulkhead-cli

# The CLI crate holds the privileged dataplane suite: real pods (netns + CNI), the real agent,
# the real kernel. CI runs as root, so it must run for real: a missing privilege is a failure.
log "cargo test -p bulkhead-cli (CLI contract and privileged dataplane suite)"
BULKHEAD_REQUIRE_PRIVILEGED=1 cargo test -p bulkhead-cli -- --nocapture --test-threads 1

log "CLI contract check on the project's conformance scenarios"
cargo build -p bulkhead-cli
# Debian's interpreter: python3-yaml (installed above) belongs to it, whatever python3 is on PATH.
/usr/bin/python3 tools/contract_check.py target/debug/bulkhead tests/conformance

# deploy/: the manifests validate against the Kubernetes OpenAPI schemas (PyPI's
# kubernetes-validate, strict: unknown fields fail) and pass `bulkhead check` as kustomize
# renders them; the image is built from Debian packages and smoke-tested in a chroot.
log "deploy/: schema validation, bulkhead check, image build and smoke test"
validator=target/kubernetes-validate
[ -x "$validator/bin/kubernetes-validate" ] || {
  python3 -m venv "$validator"
  "$validator/bin/pip" install -q kubernetes-validate==1.37.0
}
"$validator/bin/kubernetes-validate" --strict deploy/agent/namespace.yaml deploy/agent/rbac.yaml deploy/agent/daemonset.yaml
"$BULKHEAD_KUBECTL" kustomize deploy/ > target/deploy-rendered.yaml
"$validator/bin/kubernetes-validate" --strict target/deploy-rendered.yaml
target/debug/bulkhead check - < target/deploy-rendered.yaml
BULKHEAD_BINARY=target/release/bulkhead deploy/image/build.sh target/image

# deploy/monitoring/: the overlay renders with the agent's metrics on the node's address, and
# its PrometheusRule passes `promtool check rules` and the unit tests of rules.test.yaml (each
# alert fires on a synthetic series and stays quiet on a normal one).
log "deploy/monitoring/: overlay, promtool check rules, promtool test rules"
"$BULKHEAD_KUBECTL" kustomize deploy/monitoring/ > target/monitoring-rendered.yaml
grep -q -- '--listen=$(NODE_IP):9750' target/monitoring-rendered.yaml
! grep -q -- '--listen=127.0.0.1' target/monitoring-rendered.yaml
target/debug/bulkhead check - < target/monitoring-rendered.yaml
rules_dir=target/monitoring-rules
rm -rf "$rules_dir" && mkdir -p "$rules_dir"
/usr/bin/python3 -c 'import sys, yaml; yaml.safe_dump(yaml.safe_load(open(sys.argv[1]))["spec"], sys.stdout, sort_keys=False)' \
  deploy/monitoring/prometheus-rule.yaml > "$rules_dir/rules.yaml"
cp deploy/monitoring/rules.test.yaml "$rules_dir/"
promtool check rules "$rules_dir/rules.yaml"
promtool test rules "$rules_dir/rules.test.yaml"

# The fuzz targets must keep building, and their seed inputs must keep passing. With a
# nightly toolchain and cargo-fuzz this is the instrumented build; a machine with only the
# stable toolchain (CI's) builds the same targets without instrumentation and runs every seed
# through them once (libFuzzer's -runs=0), which still catches a target that stopped
# compiling or a seed that now panics.
log "fuzz targets: build, and run the seeds once"
if cargo +nightly --version >/dev/null 2>&1 && command -v cargo-fuzz >/dev/null 2>&1; then
  (cd fuzz && cargo +nightly fuzz build --dev)
  fuzz_bins="fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/debug"
else
  echo "no nightly toolchain with cargo-fuzz: building the targets with the stable toolchain"
  (cd fuzz && cargo build --bins)
  fuzz_bins=fuzz/target/debug
fi
for target in load_manifests calico_selector yaml_readers; do
  "$fuzz_bins/$target" "fuzz/seeds/$target" -runs=0
done

log "all green"
