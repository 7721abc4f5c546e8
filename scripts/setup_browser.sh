#!/usr/bin/env bash
# Install Debian's headless-capable Chromium for the report's browser test (tests/report).
# Idempotent: does nothing when a chromium binary is already on PATH. Needs root (or sudo).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "setup_browser.sh: not root and no sudo; install chromium yourself (apt-get install -y chromium)" >&2
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -qq chromium >/dev/null
