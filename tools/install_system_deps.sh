#!/usr/bin/env bash
# Install the Debian packages the project needs, only those missing (idempotent, offline-safe when
# everything is present). Called by `make install`.
#   dataset-fashion-mnist : the object appearances of the synthetic benchmark (tsmlib.synthetic)
#   chromium : headless browser with which tests/test_book.py checks the built site (math rendered,
#              figures present, nothing fetched from the network)
set -euo pipefail
PACKAGES=(chromium dataset-fashion-mnist)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        SUDO="none"
    fi
fi
if ! command -v apt-get >/dev/null || [ "$SUDO" = "none" ]; then
    # Not fatal: the library, the notebooks and `make book` work without them; the checks that need
    # them fail with this same instruction.
    echo "install_system_deps: WARNING: missing Debian packages ${missing[*]}; as root run:" >&2
    echo "    apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 0
fi
echo "install_system_deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
