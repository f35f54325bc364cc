#!/usr/bin/env bash
# Install the Debian packages the project needs, only those missing (idempotent, offline-safe when
# everything is present). Called by `make install`.
#   dataset-fashion-mnist : the items of the synthetic benchmark (tsmlib.synthetic), MIT licence,
#                           files in /usr/share/datasets/fashion-mnist
set -euo pipefail
PACKAGES=(dataset-fashion-mnist)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
    echo "install_system_deps: missing ${missing[*]} and no apt-get here; install them by hand" \
         "(or set TSM_FASHION_MNIST_DIR to a folder with the Fashion-MNIST *-ubyte.gz files)" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
        echo "install_system_deps: missing ${missing[*]}; run as root: apt-get install -y ${missing[*]}" >&2
        exit 0
    fi
    SUDO="sudo"
fi
echo "install_system_deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
