#!/usr/bin/env bash
# make browser: Debian's Chromium for the end-to-end tests (Playwright drives it
# through executable_path; Playwright's own browser download cannot work here).
set -euo pipefail
CHROMIUM=${NBPOOL_CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
    echo "browser: $("$CHROMIUM" --version 2>/dev/null || echo chromium) present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "browser: $CHROMIUM is missing; install Debian's 'chromium' package (apt-get install chromium)" >&2
    echo "browser: the browser tests skip outside CI without it, and fail under CI=true" >&2
    exit 0
fi
echo "browser: installing Debian's chromium package (first run only)..."
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null; } \
    || { echo "browser: ERROR: apt-get install chromium failed" >&2; exit 1; }
echo "browser: installed $("$CHROMIUM" --version)"
