#!/usr/bin/env bash
# Install the headless browser the browser tests drive: Debian's chromium and chromium-driver
# (/usr/bin/chromium, /usr/bin/chromedriver). Idempotent and quiet: does nothing when both are
# there. Needs root (or passwordless sudo) and apt-get; exits non-zero saying why otherwise.
# Used by CI before the test suite; locally: sudo scripts/install_browser.sh
set -euo pipefail

have() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }

if have; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser.sh: chromium/chromedriver are missing and apt-get is not available;" \
        "install Chromium and its matching chromedriver on PATH by hand." >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo="sudo -n"
    else
        echo "install_browser.sh: chromium/chromedriver are missing and installing them needs" \
            "root: run it as root or with passwordless sudo." >&2
        exit 1
    fi
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq \
    chromium chromium-driver; } >"$log" 2>&1; then
    echo "install_browser.sh: apt-get could not install chromium chromium-driver:" >&2
    tail -n 20 "$log" >&2
    exit 1
fi
if ! have; then
    echo "install_browser.sh: apt-get finished but chromium/chromedriver are still not on PATH." >&2
    exit 1
fi
echo "install_browser.sh: installed $(chromium --version 2>/dev/null | head -n 1)"
