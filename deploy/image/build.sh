#!/usr/bin/env bash
# Builds Bulkhead's OCI image without Docker, from Debian packages: mmdebstrap makes the root
# file system (Debian bookworm with nftables), the release binary goes in, the root file
# system is smoke-tested with chroot (`bulkhead --version`, `nft --version`), and umoci packs
# it as an OCI image layout. Needs root (chroot, and device nodes in the root file system).
#
#   deploy/image/build.sh [OUT]      default OUT: target/image
#   skopeo copy oci:target/image/oci:0.1.0 docker://registry.example/bulkhead:0.1.0
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-target/image}
binary=${BULKHEAD_BINARY:-target/release/bulkhead}
suite=${DEBIAN_SUITE:-bookworm}
tag=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

for tool in mmdebstrap umoci chroot; do
  command -v "$tool" >/dev/null || { echo "needs $tool (Debian packages mmdebstrap, umoci)" >&2; exit 2; }
done
[ -x "$binary" ] || cargo build --release -p bulkhead-cli
rm -rf "$out" && mkdir -p "$out"
rootfs="$out/rootfs"

echo "== root file system: Debian $suite with nftables (mmdebstrap)"
mmdebstrap --quiet --variant=essential --include=nftables,ca-certificates \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  "$suite" "$rootfs"
install -m 0755 "$binary" "$rootfs/usr/bin/bulkhead"
mkdir -p "$rootfs/run/bulkhead"

echo "== smoke test in the root file system (chroot)"
chroot "$rootfs" /usr/bin/bulkhead --version
chroot "$rootfs" /usr/sbin/nft --version
chroot "$rootfs" /usr/bin/bulkhead agent --help >/dev/null

echo "== OCI image (umoci)"
layout="$out/oci"
umoci init --layout "$layout"
umoci new --image "$layout:$tag"
umoci unpack --image "$layout:$tag" "$out/bundle"
rm -rf "$out/bundle/rootfs"
mv "$rootfs" "$out/bundle/rootfs"
umoci repack --image "$layout:$tag" "$out/bundle"
umoci config --image "$layout:$tag" \
  --config.entrypoint /usr/bin/bulkhead --config.user 0 \
  --config.label org.opencontainers.image.title=bulkhead \
  --config.label "org.opencontainers.image.version=$tag" \
  --config.label org.opencontainers.image.licenses=Apache-2.0
umoci gc --layout "$layout"
rm -rf "$out/bundle"
echo "OCI image layout: $layout (tag $tag); $(du -sh "$layout" | cut -f1)"
