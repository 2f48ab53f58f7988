#!/usr/bin/env python3
"""The security table (issue 16): every route the server registers, tried as
every kind of caller, plus hostile input. Run by test_security_table.sh
against a fresh `kiln serve`; exits 0 on pass, 1 with the failures listed.

The table is checked against GET /api/v1/routes: a route without a row (or a
row without a route) fails the test, so adding a route means adding its row.

Callers: anon (no token), read, subA (submitted the job: "own"), subB
(another submitter: "others'"), reg (a registration token), w1 (the worker
holding the job: "own"), w2 (another worker: "others'"), admin.
Each expected status is what the guard makes it; removing a guard changes
at least one cell (e.g. w2's report on w1's job would be 200, subB's cancel
of subA's job would be 200, reg's lease would be 204).
"""
import http.client
import json
import os
import socket
import sys
import time

PORT = int(os.environ["PORT"])
TOK = {k: os.environ.get("TOK_" + k.upper(), "")
       for k in ("read", "subA", "subB", "reg", "admin", "scoped")}
TOK["anon"] = ""
ROLES = ["anon", "read", "subA", "subB", "reg", "w1", "w2", "admin"]
WEB = os.environ.get("WEB_DIR", "web")
failures = []
cases = 0


def request(who, method, path, body=None, headers=None, timeout=20, read_body=True):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=timeout)
    h = dict(headers or {})
    if TOK.get(who):
        h["Authorization"] = "Bearer " + TOK[who]
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode() if not isinstance(body, str) else body.encode()
        h.setdefault("Content-Type", "application/json")
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read() if read_body else b""
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    try:
        js = json.loads(data) if data else None
    except ValueError:
        js = None
    return r.status, js, data, hdrs


def check(what, got, want):
    global cases
    cases += 1
    ok = want(got) if callable(want) else got == want
    if not ok:
        failures.append("%s: got %s, wanted %s" % (what, got, getattr(want, "__name__", want)))


def exp(anon, read, subA, subB, reg, w1, w2, admin):
    return dict(zip(ROLES, [anon, read, subA, subB, reg, w1, w2, admin]))


READS = exp(401, 200, 200, 200, 403, 200, 200, 200)
ADMIN_ONLY = exp(401, 403, 403, 403, 403, 403, 403, 200)
OPEN = exp(*([200] * 8))

# ---- fixtures ----
wid = {}


def register(name, who="reg", query=""):
    st, js, _, _ = request(who, "POST", "/api/v1/workers/register" + query,
                           {"name": name, "cores": 64, "ram_mb": 65536,
                            "platform": "x86_64-linux"})
    return st, js


for w in ("w1", "w2"):
    st, js = register(w)
    if st != 200 or not js.get("credential"):
        print("FAIL: cannot register %s: %s %s" % (w, st, js))
        sys.exit(1)
    TOK[w] = js["credential"]
    wid[w] = js["worker_id"]

seq = [0]


def clean_queue():
    st, js, _, _ = request("admin", "GET", "/api/v1/jobs?state=queued&limit=1000")
    for j in (js or {}).get("jobs", []):
        request("admin", "POST", "/api/v1/jobs/%d/cancel" % j["id"])


def fresh_job(leased=False):
    """A job submitted by subA; leased to w1 when asked."""
    clean_queue()
    seq[0] += 1
    st, js, _, _ = request("subA", "POST", "/api/v1/jobs",
                           {"name": "t%d" % seq[0], "command": "true", "cores": 1, "ram_mb": 64})
    assert st == 201, (st, js)
    jid = js["jobs"][0]["id"]
    if leased:
        st, js, _, _ = request("w1", "POST", "/api/v1/workers/%d/lease?wait=1" % wid["w1"], {})
        got = (js or {}).get("job", {}).get("id")
        assert st == 200 and got == jid, ("lease", st, js, jid)
    return jid


def each(route, want, make, after=None):
    """make(who) -> (method, path, body[, headers]); one fresh call per caller."""
    for who in ROLES:
        m, p, b, *h = make(who)
        st = request(who, m, p, b, h[0] if h else None)[0]
        check("%s as %s (%s %s)" % (route, who, m, p), st, want[who])
        if after:
            after(who, st)


def sse_status(who, path):
    """Status of a streaming GET without waiting for its end."""
    s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    auth = "Authorization: Bearer %s\r\n" % TOK[who] if TOK.get(who) else ""
    s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (path, auth)).encode())
    line = b""
    while not line.endswith(b"\r\n"):
        ch = s.recv(1)
        if not ch:
            break
        line += ch
    s.close()
    return int(line.split()[1]) if line.startswith(b"HTTP/") else 0


# ---- the table: one row per registered route ----
def row_jobs_post():
    each("POST /api/v1/jobs", exp(401, 403, 201, 201, 403, 403, 403, 201),
         lambda who: ("POST", "/api/v1/jobs", {"name": "s-" + who, "command": "true"}))
    clean_queue()


def row_jobs_get():
    each("GET /api/v1/jobs", READS, lambda who: ("GET", "/api/v1/jobs", None))


def row_queue_get():
    each("GET /api/v1/queue", READS, lambda who: ("GET", "/api/v1/queue", None))


def row_job_get():
    j = fresh_job()
    each("GET /api/v1/jobs/{id}", READS, lambda who: ("GET", "/api/v1/jobs/%d" % j, None))


def row_cancel():
    each("POST /api/v1/jobs/{id}/cancel", exp(401, 403, 200, 403, 403, 403, 403, 200),
         lambda who: ("POST", "/api/v1/jobs/%d/cancel" % fresh_job(), None))


def row_retry():
    def make(who):
        j = fresh_job()
        request("admin", "POST", "/api/v1/jobs/%d/cancel" % j)
        return ("POST", "/api/v1/jobs/%d/retry" % j, None)
    each("POST /api/v1/jobs/{id}/retry", exp(401, 403, 200, 403, 403, 403, 403, 200), make)
    clean_queue()


def row_log_get():
    j = fresh_job()
    each("GET /api/v1/jobs/{id}/log", READS, lambda who: ("GET", "/api/v1/jobs/%d/log" % j, None))


def row_log_post():
    each("POST /api/v1/jobs/{id}/log", exp(401, 403, 403, 403, 403, 200, 409, 403),
         lambda who: ("POST", "/api/v1/jobs/%d/log?attempt=1&offset=0" % fresh_job(True),
                      "forged line\n", {"Content-Type": "application/octet-stream"}))


def row_report():
    def after(who, st):
        pass
    each("POST /api/v1/jobs/{id}/report", exp(401, 403, 403, 403, 403, 200, 409, 403),
         lambda who: ("POST", "/api/v1/jobs/%d/report" % fresh_job(True),
                      {"attempt": 1, "exit_code": 0}), after)


def row_reports():
    # The batch route is the worker's own (w2 is refused at the door); a job
    # of another worker inside w2's own batch fails alone, as a single report.
    each("POST /api/v1/workers/{id}/reports", exp(401, 403, 403, 403, 403, 200, 403, 403),
         lambda who: ("POST", "/api/v1/workers/%d/reports" % wid["w1"],
                      {"reports": [{"job": fresh_job(True), "attempt": 1, "exit_code": 0}]}))
    j = fresh_job(True)
    st, js, _, _ = request("w2", "POST", "/api/v1/workers/%d/reports" % wid["w2"],
                           {"reports": [{"job": j, "attempt": 1, "exit_code": 0}]})
    item = ((js or {}).get("results") or [{}])[0]
    check("w2 reports w1's job in its own batch", (st, item.get("status")), (200, 409))
    st, js, _, _ = request("admin", "GET", "/api/v1/jobs/%d" % j)
    check("w2's batch report left w1's job running", (js or {}).get("state"), "building")
    clean_queue()


def row_events():
    for who in ROLES:
        check("GET /api/v1/events as %s" % who, sse_status(who, "/api/v1/events"), READS[who])
    time.sleep(0.3)  # let the server see those streams go


def row_workers_get():
    each("GET /api/v1/workers", READS, lambda who: ("GET", "/api/v1/workers", None))


def row_register():
    body = {"name": "w1", "cores": 64, "ram_mb": 65536, "platform": "x86_64-linux"}

    def after(who, st):
        pass
    for who in ROLES:
        st, js, _, _ = request(who, "POST", "/api/v1/workers/register", body)
        want = exp(401, 403, 403, 403, 409, 200, 403, 409)[who]
        check("POST /api/v1/workers/register (live name w1) as %s" % who, st, want)
        if who == "w1" and st == 200:
            TOK["w1"] = js["credential"]  # rotated
    # A new name is free for a registration token; an admin may replace.
    st, js = register("w3")
    check("register a new name with a registration token", st, 200)
    c3 = (js or {}).get("credential", "")
    st, _ = register("w3", "admin", "?replace=1")
    check("admin replaces live worker w3", st, 200)
    TOK["c3"] = c3
    st = request("c3", "POST", "/api/v1/workers/%d/heartbeat" % (js or {}).get("worker_id", 0),
                 {})[0]
    check("replaced worker's old credential", st, 401)


def row_lease():
    clean_queue()
    each("POST /api/v1/workers/{id}/lease", exp(401, 403, 403, 403, 403, 204, 403, 403),
         lambda who: ("POST", "/api/v1/workers/%d/lease?wait=0" % wid["w1"], {}))


def row_heartbeat():
    each("POST /api/v1/workers/{id}/heartbeat", exp(401, 403, 403, 403, 403, 200, 403, 403),
         lambda who: ("POST", "/api/v1/workers/%d/heartbeat" % wid["w1"], {}))


def row_drain():
    each("POST /api/v1/workers/{id}/drain", ADMIN_ONLY,
         lambda who: ("POST", "/api/v1/workers/%d/drain" % wid["w2"], {"drain": False}))


def row_recipes():
    each("GET /api/v1/recipes", READS, lambda who: ("GET", "/api/v1/recipes", None))


def row_expand():
    each("GET /api/v1/recipes/{name}/expand", READS,
         lambda who: ("GET", "/api/v1/recipes/demo/expand", None))


def row_healthz():
    each("GET /healthz", OPEN, lambda who: ("GET", "/healthz", None))


def row_metrics():
    each("GET /metrics", READS, lambda who: ("GET", "/metrics", None))


def row_index():
    each("GET /", OPEN, lambda who: ("GET", "/", None))


def row_index_html():
    each("GET /index.html", OPEN, lambda who: ("GET", "/index.html", None))


def row_web():
    each("GET /web/*", OPEN, lambda who: ("GET", "/web/app.js", None))


def row_audit():
    each("GET /api/v1/audit", ADMIN_ONLY, lambda who: ("GET", "/api/v1/audit", None))


def row_routes():
    each("GET /api/v1/routes", ADMIN_ONLY, lambda who: ("GET", "/api/v1/routes", None))


def row_hooks():
    # Webhooks authenticate by signature, not token: the same for everyone.
    each("POST /api/v1/hooks (forged signature)", exp(*([401] * 8)),
         lambda who: ("POST", "/api/v1/hooks/github", '{"zen":"x"}',
                      {"X-GitHub-Event": "ping", "X-GitHub-Delivery": "f-" + who,
                       "X-Hub-Signature-256": "sha256=" + "0" * 64}))
    each("POST /api/v1/hooks exactly", exp(*([404] * 8)),
         lambda who: ("POST", "/api/v1/hooks?github", '{"zen":"x"}', {}))


def row_repos_get():
    each("GET /api/v1/repos", READS, lambda who: ("GET", "/api/v1/repos", None))


def row_repos_post():
    each("POST /api/v1/repos", exp(401, 403, 403, 403, 403, 403, 403, 400),
         lambda who: ("POST", "/api/v1/repos", {"bogus": 1}))


def row_releases():
    each("GET /api/v1/releases", READS, lambda who: ("GET", "/api/v1/releases", None))
    each("GET /api/v1/releases/{id} (none)", exp(401, 404, 404, 404, 403, 404, 404, 404),
         lambda who: ("GET", "/api/v1/releases/999", None))


def row_catalog():
    each("GET /api/v1/catalog", READS, lambda who: ("GET", "/api/v1/catalog", None))
    # Workers cannot create catalog entries (the old code let any worker
    # token publish, and the farm's key signed it); admin passes auth and
    # gets a 400 for the empty meta.
    each("POST /api/v1/catalog", exp(401, 403, 403, 403, 403, 403, 403, 400),
         lambda who: ("POST", "/api/v1/catalog", {"digest": "sha256:" + "0" * 64}))
    each("PUT /api/v1/catalog/blobs", exp(401, 403, 403, 403, 403, 403, 403, 400),
         lambda who: ("PUT", "/api/v1/catalog/blobs/sha256:" + "0" * 64, "x",
                      {"Content-Type": "application/octet-stream"}))


def row_staging():
    each("GET /api/v1/staging", READS, lambda who: ("GET", "/api/v1/staging", None))
    # Only the worker holding the job's current attempt stages its outputs:
    # another worker's credential is refused, so it cannot plant NARs that
    # the farm's key would then sign.
    each("POST /api/v1/staging/{job}/plan", exp(401, 403, 403, 403, 403, 200, 409, 403),
         lambda who: ("POST", "/api/v1/staging/%d/plan?attempt=1" % fresh_job(True),
                      {"paths": []}))
    each("PUT /api/v1/staging/{job}/nar", exp(401, 403, 403, 403, 403, 404, 409, 403),
         lambda who: ("PUT", "/api/v1/staging/%d/nar/%s?attempt=1&offset=0"
                      % (fresh_job(True), "0" * 32), "x",
                      {"Content-Type": "application/octet-stream"}))


def row_nix_cache():
    each("GET /nix-cache/", READS, lambda who: ("GET", "/nix-cache/nix-cache-info", None))


TABLE = {
    "POST /api/v1/jobs": row_jobs_post,
    "GET /api/v1/jobs": row_jobs_get,
    "GET /api/v1/jobs/{id}": row_job_get,
    "GET /api/v1/queue": row_queue_get,
    "POST /api/v1/jobs/{id}/cancel": row_cancel,
    "POST /api/v1/jobs/{id}/retry": row_retry,
    "GET /api/v1/jobs/{id}/log": row_log_get,
    "POST /api/v1/jobs/{id}/log": row_log_post,
    "POST /api/v1/jobs/{id}/report": row_report,
    "POST /api/v1/workers/{id}/reports": row_reports,
    "GET /api/v1/events": row_events,
    "GET /api/v1/workers": row_workers_get,
    "POST /api/v1/workers/register": row_register,
    "POST /api/v1/workers/{id}/lease": row_lease,
    "POST /api/v1/workers/{id}/heartbeat": row_heartbeat,
    "POST /api/v1/workers/{id}/drain": row_drain,
    "GET /api/v1/recipes": row_recipes,
    "GET /api/v1/recipes/{name}/expand": row_expand,
    "GET /healthz": row_healthz,
    "GET /metrics": row_metrics,
    "GET /": row_index,
    "GET /index.html": row_index_html,
    "GET /web/*": row_web,
    "GET /api/v1/audit": row_audit,
    "GET /api/v1/routes": row_routes,
    "POST /api/v1/hooks": row_hooks,
    "GET /api/v1/repos": row_repos_get,
    "POST /api/v1/repos": row_repos_post,
    "GET /api/v1/releases": row_releases,
    "* /api/v1/catalog": row_catalog,
    "* /nix-cache/": row_nix_cache,
    "* /api/v1/staging": row_staging,
}


# ---- hostile input ----
def hostile_paths():
    for p in ("/web/../kiln.db", "/web/%2e%2e/kiln.db", "/web/..%2fkiln.db", "/web//etc/passwd",
              "/web/.hidden", "/web/app.js%00.png", "/web/....//....//etc/passwd"):
        st, _, data, _ = request("admin", "GET", p)
        check("path traversal %s" % p, st, 404)
        check("path traversal %s leaks nothing" % p,
              b"SQLite format" in data or b"root:" in data, False)


def hostile_xss():
    xss = "<script>alert(1)</script>"
    st = request("subA", "POST", "/api/v1/jobs", {"name": xss, "command": "true"})[0]
    check("XSS in a job name is refused", st, 400)
    st, js, _, h = request("subA", "POST", "/api/v1/jobs",
                           {"name": "xss", "command": "echo '%s'" % xss,
                            "attrs": {"note": xss}, "env": {"X": xss}})
    check("XSS in shown fields is stored as data", st, 201)
    st, _, _, h = request("read", "GET", "/api/v1/jobs")
    check("the API answers JSON, never HTML", h.get("content-type", "").split(";")[0],
          "application/json")
    st, _, _, h = request("anon", "GET", "/")
    check("the page forbids inline scripts",
          "script-src 'self'" in h.get("content-security-policy", ""), True)
    check("the page forbids sniffing", h.get("x-content-type-options"), "nosniff")
    # The page builds DOM from data with textContent only: no HTML sinks.
    sinks = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(")
    for root, _, files in os.walk(WEB):
        for f in files:
            if f.endswith((".js", ".mjs", ".html")):
                text = open(os.path.join(root, f), encoding="utf-8", errors="replace").read()
                for s in sinks:
                    check("web/%s uses no %s" % (f, s), s in text, False)
    clean_queue()


def hostile_sql():
    st, js, _, _ = request("read", "GET", "/api/v1/jobs?limit=1000")
    total = len((js or {}).get("jobs", []))
    for k in ("name", "recipe", "branch", "q", "state"):
        for v in ("x' OR '1'='1", "x\" OR 1=1 --", "%' --", "'; DROP TABLE jobs; --"):
            from urllib.parse import quote
            st, js, _, _ = request("read", "GET", "/api/v1/jobs?%s=%s" % (k, quote(v)))
            check("SQL metacharacters in %s=%r" % (k, v), st in (200, 400), True)
            if st == 200:
                check("filter %s=%r matches nothing" % (k, v), len(js.get("jobs", [])), 0)
    st, js, _, _ = request("read", "GET", "/api/v1/jobs?limit=1000")
    check("jobs table intact after SQL metacharacters", len((js or {}).get("jobs", [])), total)


def raw(data, read=True, timeout=10):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=timeout)
    s.sendall(data)
    out = b""
    if read:
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                out += b
                if b"\r\n\r\n" in out and b"}" in out:
                    break
        except socket.timeout:
            pass
    s.close()
    return int(out.split()[1]) if out.startswith(b"HTTP/") else 0


def hostile_http():
    check("oversized header", raw(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20000 +
                                  b"\r\n\r\n"), 431)
    check("malformed request line", raw(b"GARBAGE\r\n\r\n"), 400)
    check("bad version", raw(b"GET / HTTP/9.9\r\n\r\n"), 400)
    check("bad content-length", raw(b"POST /api/v1/jobs HTTP/1.1\r\nHost: t\r\n"
                                    b"Content-Length: -5\r\n\r\n"), 400)
    st = request("admin", "POST", "/api/v1/jobs", b"{" * (9 << 20),
                 {"Content-Type": "application/json"})[0]
    check("oversized body", st, 413)
    st = request("subA", "POST", "/api/v1/jobs", '{"name":"a","command":')[0]
    check("malformed JSON body", st, 400)
    # The token before the body: no token and an oversized body is 401.
    st = request("anon", "POST", "/api/v1/jobs", b"{" * (9 << 20),
                 {"Content-Type": "application/json"})[0]
    check("token checked before the body", st, 401)


def hostile_slowloris():
    # Header trickle: the whole head has a deadline (header_timeout_ms 1000).
    s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    s.sendall(b"GET /healthz HTTP/1.1\r\n")
    got = b""
    for _ in range(40):
        try:
            s.sendall(b"X")
        except OSError:
            break
        time.sleep(0.1)
        s.setblocking(False)
        try:
            got += s.recv(4096)
        except (BlockingIOError, OSError):
            pass
        s.setblocking(True)
        if got:
            break
    s.close()
    check("slowloris header trickle", int(got.split()[1]) if got.startswith(b"HTTP/") else 0, 408)
    # Body trickle: a byte every 200 ms never resets the body deadline (1500 ms).
    s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    s.sendall(("POST /api/v1/jobs HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
               "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n" %
               TOK["subA"]).encode())
    got = b""
    for _ in range(60):
        try:
            s.sendall(b" ")
        except OSError:
            break
        time.sleep(0.2)
        s.setblocking(False)
        try:
            got += s.recv(4096)
        except (BlockingIOError, OSError):
            pass
        s.setblocking(True)
        if got:
            break
    s.close()
    check("slowloris body trickle", int(got.split()[1]) if got.startswith(b"HTTP/") else 0, 408)


def hostile_caps():
    # Per-client connection cap (max_connections_per_client 16).
    socks = []
    for _ in range(16):
        socks.append(socket.create_connection(("127.0.0.1", PORT), timeout=10))
    time.sleep(0.2)
    c = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    c.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    data = c.recv(4096)
    c.close()
    check("a 17th connection from one client is refused",
          data.split(b"\r\n")[0].split()[1:2], [b"503"])
    check("the refusal names its reason", b"too many connections from" in data, True)
    for s in socks:
        s.close()
    time.sleep(0.3)
    # SSE cap (max_streams 2): two streams, the third is a clear 503.
    held = []
    for _ in range(2):
        s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
        s.sendall(("GET /api/v1/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n\r\n"
                   % TOK["read"]).encode())
        s.recv(64)
        held.append(s)
    st, js, data, _ = request("read", "GET", "/api/v1/events")
    check("a third event stream is refused", st, 503)
    check("the refusal names its limit", b"too many event streams" in data, True)
    for s in held:
        s.close()
    time.sleep(0.3)


def hostile_webhooks():
    import hashlib
    import hmac
    body = b'{"zen":"keep it logically awesome","hook_id":1}'
    sig = "sha256=" + hmac.new(b"hooksecret", body, hashlib.sha256).hexdigest()
    hd = {"X-GitHub-Event": "ping", "X-Hub-Signature-256": sig}
    st, js, _, _ = request("anon", "POST", "/api/v1/hooks/github", body,
                           dict(hd, **{"X-GitHub-Delivery": "r1"}))
    check("signed ping", (st, (js or {}).get("duplicate")), (200, None))
    st, js, _, _ = request("anon", "POST", "/api/v1/hooks/github", body,
                           dict(hd, **{"X-GitHub-Delivery": "r1"}))
    check("replayed webhook", (js or {}).get("duplicate"), True)
    st, js, _, _ = request("anon", "POST", "/api/v1/hooks/github", body,
                           dict(hd, **{"X-GitHub-Delivery": "r2-forged"}))
    check("replayed webhook under a new delivery id", (js or {}).get("duplicate"), True)
    bad = dict(hd, **{"X-Hub-Signature-256": "sha256=" + "1" * 64, "X-GitHub-Delivery": "r3"})
    check("forged webhook", request("anon", "POST", "/api/v1/hooks/github", body, bad)[0], 401)


def scoped_token():
    """A submit token scoped to recipes "de*" on branch main: inside its
    scope it submits, cancels and retries; outside it gets a 403 naming the
    scope. Without the scope check each "outside" case would be 201 (or the
    recipe's own 404)."""
    clean_queue()
    st, js, _, _ = request("scoped", "POST", "/api/v1/jobs", {"recipe": "demo", "branch": "main"})
    check("scoped token: submit inside its scope", st, 201)
    mine = js["jobs"][0]["id"] if st == 201 else 0
    for body, names in (({"recipe": "demo", "branch": "dev"}, "branches [main]"),
                        ({"recipe": "pytorch", "branch": "main"}, "recipes [de*]"),
                        ({"recipe": "nosuch", "branch": "main"}, "recipes [de*]"),
                        ({"name": "adhoc", "command": "true", "branch": "main"}, "recipes [de*]")):
        st, js, _, _ = request("scoped", "POST", "/api/v1/jobs", body)
        msg = ((js or {}).get("error") or {}).get("message", "")
        check("scoped token: submit %s outside its scope" % json.dumps(body), (st, names in msg),
              (403, True))
    if mine:
        check("scoped token: cancel its own job",
              request("scoped", "POST", "/api/v1/jobs/%d/cancel" % mine)[0], 200)
        check("scoped token: retry its own job",
              request("scoped", "POST", "/api/v1/jobs/%d/retry" % mine)[0], 200)
    other = fresh_job()
    check("scoped token: cancel another's job",
          request("scoped", "POST", "/api/v1/jobs/%d/cancel" % other)[0], 403)
    clean_queue()


def main():
    st, js, _, _ = request("admin", "GET", "/api/v1/routes")
    if st != 200:
        print("FAIL: GET /api/v1/routes: %s" % st)
        return 1
    served = {"%s %s" % (r["method"], r["path"]) for r in js["routes"]}
    for r in sorted(served - set(TABLE)):
        failures.append("route %s has no row in tests/security/security_table.py" % r)
    for r in sorted(set(TABLE) - served):
        failures.append("row %s names no route the server registers" % r)
    for key in TABLE:
        if key in served:
            TABLE[key]()
    for f in (hostile_paths, hostile_xss, hostile_sql, hostile_http, hostile_slowloris,
              hostile_caps, hostile_webhooks, scoped_token):
        f()
    st, js, _, _ = request("admin", "GET", "/api/v1/audit?limit=1000")
    check("refusals are audited",
          any(a["outcome"] == "403" for a in (js or {}).get("audit", [])), True)
    print("security table: %d routes, %d cases, %d failures" % (len(served), cases,
                                                                  len(failures)))
    for f in failures:
        print("FAIL: " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
