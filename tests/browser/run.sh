#!/usr/bin/env bash
# Browser tests for web/: playwright-core (pinned in package-lock.json)
# driving Debian's chromium against a real `kiln serve` (KILN_BIN or
# build/kiln) when it can serve, else the mock server. Exit 0 pass, 1 fail,
# 77 skip (chromium or node missing). KILN_WEB_MOCK=1 forces the mock.
#   bash tests/browser/run.sh [test-name-substring...]
set -u
here=$(cd "$(dirname "$0")" && pwd)
export KILN_SRC=${KILN_SRC:-$(cd "$here/../.." && pwd)}
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "SKIP: node/npm not installed (apt-get install nodejs npm)"
    exit 77
fi
if [ ! -x "$CHROMIUM" ]; then
    echo "SKIP: $CHROMIUM not found (apt-get install chromium)"
    exit 77
fi
if [ ! -d "$here/node_modules/playwright-core" ]; then
    echo "run.sh: installing playwright-core (npm ci)"
    (cd "$here" && npm ci --no-audit --no-fund --prefer-offline) || {
        echo "run.sh: npm ci failed" >&2
        exit 1
    }
fi
if [ -z "${KILN_BIN:-}" ] && [ -x "$KILN_SRC/build/kiln" ]; then export KILN_BIN=$KILN_SRC/build/kiln; fi
cd "$here" || exit 1
timeout "${BROWSER_TIMEOUT:-600}" node run-tests.mjs "$@"
rc=$?
[ $rc -eq 124 ] && echo "run.sh: timed out"
exit $rc
