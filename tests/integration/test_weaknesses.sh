#!/usr/bin/env bash
# The weaknesses of issue 16, one probe each (tests/security/weaknesses.py),
# against a fresh kiln serve. Exit 0 pass, 77 skip.
#
# --old (or KILN_OLD=1): run against a binary from before the security work,
# to show that each probe fails there. That binary refuses the new limit
# settings, so it gets only the settings it knows and runs with its own
# defaults -- which had no such caps, the weakness itself. The exit status
# is then 0 when EVERY probe failed (each weakness was real and seen).
set -u
: "${KILN_BIN:?set KILN_BIN}" "${KILN_SRC:?set KILN_SRC}"
OLD=${KILN_OLD:-0}
[ "${1-}" = --old ] && OLD=1
command -v python3 >/dev/null || { echo "SKIP: python3 not installed"; exit 77; }
command -v git >/dev/null || { echo "SKIP: git not installed"; exit 77; }
. "$KILN_SRC/tests/integration/lib_serve.sh"
T=$(mktemp -d /tmp/kiln-weak-XXXXXX)
trap 'stop_serve; rm -rf "$T"' EXIT
D=$T/var

# A repository with its own webhook secret (poll_s 0: only hooks trigger it).
git init -q -b main "$T/work" && git -C "$T/work" -c user.email=t@t -c user.name=t \
    commit -q --allow-empty -m init && git init -q --bare "$T/own.git" &&
    git -C "$T/work" push -q "$T/own.git" main || fail "git setup"

export LIM_STREAMS=2 LIM_LEASE_WAITS=2 LIM_CONNS=16 LIM_BODY_MS=1500 LIM_LOG_QUOTA=8192
{
    echo "allow_anonymous_read: true"
    echo "max_lease_wait_s: 30"
    if [ "$OLD" != 1 ]; then
        echo "max_streams: $LIM_STREAMS"
        echo "max_lease_waits: $LIM_LEASE_WAITS"
        echo "max_connections_per_client: $LIM_CONNS"
        echo "body_timeout_ms: $LIM_BODY_MS"
        echo "log_quota_bytes: $LIM_LOG_QUOTA"
    fi
    cat <<Y
hooks:
  secret: hooksecret
repos:
  - name: own
    url: $T/own.git
    recipes: [recipes/demo.yaml]
    poll_s: 0
    initial_build: false
    secret: its-own
Y
} >"$T/kiln.yaml"
export OWN_REPO_URL=$T/own.git HOOK_SECRET=hooksecret
tok() { "$KILN_BIN" token create --role "$1" --data "$D" 2>/dev/null | grep -oE 'kiln_[0-9a-f]{48}'; }
export TOK_READ=$(tok read) TOK_SUBA=$(tok submit) TOK_SUBB=$(tok submit) TOK_REG=$(tok worker)
export TOK_ADMIN=$(tok admin)
[ -n "$TOK_READ" ] && [ -n "$TOK_SUBB" ] && [ -n "$TOK_REG" ] && [ -n "$TOK_ADMIN" ] ||
    fail "token create"
cd "$KILN_SRC" || exit 1
start_serve "$D" --config "$T/kiln.yaml" --recipes "$KILN_SRC/recipes" || fail "serve did not start"
export PORT
python3 "$KILN_SRC/tests/security/weaknesses.py" | tee "$T/out"
rc=${PIPESTATUS[0]}
if [ "$OLD" = 1 ]; then
    grep -q '^PASS ' "$T/out" && { echo "FAIL: a probe passed on the old binary"; exit 1; }
    grep -qE '^0 passed, [1-9][0-9]* failed$' "$T/out" || { echo "FAIL: the probes did not run"; exit 1; }
    echo "PASS (every probe failed on the old binary)"
    exit 0
fi
[ "$rc" = 0 ] || { tail -20 "$D.serve.log"; exit 1; }
echo PASS
