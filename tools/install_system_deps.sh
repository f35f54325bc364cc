#!/usr/bin/env bash
# Install the Debian packages the project needs (tools/system-packages.txt, the one list), only the
# missing ones. Called by `make install`, so by `make test` and `make book`.
#
#   tools/install_system_deps.sh            install what is missing (root, or sudo without a password)
#   tools/install_system_deps.sh --dry-run  print what would be installed, change nothing
#   tools/install_system_deps.sh --list     print the package names, one per line
#
# Without root or password-less sudo it stops with the exact command to run as root (exit 1);
# TSM_SKIP_SYSTEM_DEPS=1 turns that into a warning for users who provide the files another way
# (e.g. TSM_FASHION_MNIST_DIR, or no site checks).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mapfile -t PACKAGES < <(grep -v '^[[:space:]]*\(#\|$\)' "$here/system-packages.txt" | awk '{print $1}')

mode="install"
case "${1:-}" in
    "") ;;
    --dry-run) mode="dry-run" ;;
    --list) printf '%s\n' "${PACKAGES[@]}"; exit 0 ;;
    *) echo "usage: $0 [--dry-run | --list]" >&2; exit 2 ;;
esac

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install_system_deps: all present (${PACKAGES[*]})"
    exit 0
fi
command_line="apt-get update && apt-get install -y ${missing[*]}"
if [ "$mode" = "dry-run" ]; then
    echo "install_system_deps: would run: $command_line"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        SUDO="none"
    fi
fi
if ! command -v apt-get >/dev/null || [ "$SUDO" = "none" ]; then
    echo "install_system_deps: missing Debian packages: ${missing[*]}" >&2
    echo "install_system_deps: this needs root (or sudo without a password); as root run:" >&2
    echo "    $command_line" >&2
    if [ "${TSM_SKIP_SYSTEM_DEPS:-0}" = "1" ]; then
        echo "install_system_deps: TSM_SKIP_SYSTEM_DEPS=1: going on without them" >&2
        exit 0
    fi
    exit 1
fi
echo "install_system_deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
