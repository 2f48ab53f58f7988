#!/usr/bin/env bash
# The security table (issue 16): starts kiln serve with small limits and
# runs tests/security/security_table.py against it (every registered route
# as every kind of caller, then hostile input). Exit 0 pass, 77 skip.
set -u
: "${KILN_BIN:?set KILN_BIN}" "${KILN_SRC:?set KILN_SRC}"
command -v python3 >/dev/null || { echo "SKIP: python3 not installed"; exit 77; }
. "$KILN_SRC/tests/integration/lib_serve.sh"
T=$(mktemp -d /tmp/kiln-sec-XXXXXX)
trap 'stop_serve; rm -rf "$T"' EXIT
D=$T/var
cat >"$T/kiln.yaml" <<Y
max_streams: 2
max_connections_per_client: 16
header_timeout_ms: 1000
body_timeout_ms: 1500
hooks:
  secret: hooksecret
Y
tok() { "$KILN_BIN" token create --role "$1" --data "$D" 2>/dev/null | grep -oE 'kiln_[0-9a-f]{48}'; }
export TOK_READ=$(tok read) TOK_SUBA=$(tok submit) TOK_SUBB=$(tok submit) TOK_REG=$(tok worker)
export TOK_ADMIN=$(tok admin)
# A submit token scoped to recipes "de*" on branch main (build point 3).
export TOK_SCOPED=$("$KILN_BIN" token create --role submit --recipe 'de*' --branch main \
    --data "$D" 2>/dev/null | grep -oE 'kiln_[0-9a-f]{48}')
[ -n "$TOK_SCOPED" ] || fail "scoped token create"
[ -n "$TOK_READ" ] && [ -n "$TOK_SUBA" ] && [ -n "$TOK_ADMIN" ] || fail "token create"
cd "$KILN_SRC" || exit 1
start_serve "$D" --config "$T/kiln.yaml" --recipes "$KILN_SRC/recipes" --web "$KILN_SRC/web" ||
    fail "serve did not start"
export PORT WEB_DIR=$KILN_SRC/web
python3 "$KILN_SRC/tests/security/security_table.py" || { tail -20 "$D.serve.log"; exit 1; }
echo PASS
