#!/usr/bin/env bash
# Install what the media browser tests need: Debian's chromium and the Playwright
# Python package (used only as a driver with executable_path=/usr/bin/chromium).
# Never runs `playwright install`: no browser builds are downloaded.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
if ! [ -x /usr/bin/chromium ]; then
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium fonts-dejavu-core
fi
if ! python3 -c "import playwright" >/dev/null 2>&1; then
    python3 -m pip install -q playwright
fi
/usr/bin/chromium --version || true
