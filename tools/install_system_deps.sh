#!/usr/bin/env bash
# Install the Debian packages the project needs outside PyPI, only when they are missing
# (idempotent: a machine that has them runs no apt-get at all).
#   chromium - headless browser with which tests/test_book.py checks the built site offline
# Needs root (or password-less sudo) only when something is missing; without either it only warns.
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    # Not fatal: the library, the notebooks and `make book` work without them; only the browser checks
    # of tests/test_book.py need chromium, and they fail with the same instruction.
    echo "install_system_deps: WARNING: missing Debian packages: ${missing[*]}; install them as root:" >&2
    echo "    apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 0
fi

echo "install_system_deps: installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${missing[@]}"
