#!/usr/bin/env python3
"""One probe per weakness that issue 16 lists under "Why", attacking through
HTTP only and asserting the safe behaviour. Run by
tests/integration/test_weaknesses.sh against a fresh `kiln serve`.

The probes run against the current binary (all must pass) and against the
binary from before the security work (KILN_OLD=1; each must fail, which is
the proof that the weakness was real and that the probe sees it). So they
use only what both servers speak: where the new server issues a worker
credential at registration, the old one issued none and workers used the
registration token for everything -- the probe then acts with that token,
which is exactly the old weakness. Where the new server accepts a secret
env value ({"secret": ...}) and the old one refuses the form, the value is
submitted plain: the old server had no way to keep it from readers.

Limits (the runner's config for the new binary; the old binary accepts none
of these keys and runs with its defaults, which had no such caps):
LIM_STREAMS, LIM_LEASE_WAITS, LIM_CONNS, LIM_BODY_MS, LIM_LOG_QUOTA.

Prints `PASS name` or `FAIL name: what happened` per probe, then
`N passed, N failed`; exits 0 when none failed.
"""
import hashlib
import hmac
import http.client
import json
import os
import socket
import sys
import time

PORT = int(os.environ["PORT"])
TOK = {k: os.environ.get("TOK_" + k.upper(), "") for k in ("read", "subA", "subB", "reg", "admin")}
TOK["anon"] = ""
LIM_STREAMS = int(os.environ.get("LIM_STREAMS", "2"))
LIM_LEASE_WAITS = int(os.environ.get("LIM_LEASE_WAITS", "2"))
LIM_CONNS = int(os.environ.get("LIM_CONNS", "16"))
LIM_BODY_MS = int(os.environ.get("LIM_BODY_MS", "1500"))
LIM_LOG_QUOTA = int(os.environ.get("LIM_LOG_QUOTA", "8192"))
HOOK_SECRET = os.environ.get("HOOK_SECRET", "hooksecret").encode()
OWN_REPO_URL = os.environ.get("OWN_REPO_URL", "")
SLACK_S = 6.0  # generous: a busy 2-core machine still answers within this
SECRET = "s3cr3t-Value-7f1e"
results = []


def request(who, method, path, body=None, headers=None, timeout=20):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=timeout)
    h = dict(headers or {})
    tok = TOK.get(who, who if who.startswith("kiln_") else "")
    if tok:
        h["Authorization"] = "Bearer " + tok
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode() if not isinstance(body, str) else body.encode()
        h.setdefault("Content-Type", "application/json")
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    try:
        js = json.loads(data) if data else None
    except ValueError:
        js = None
    return r.status, js, data


def sock():
    return socket.create_connection(("127.0.0.1", PORT), timeout=10)


def status_line(s, timeout):
    """The status of the first response line on s within timeout (0: none)."""
    s.settimeout(timeout)
    got = b""
    try:
        while b"\r\n" not in got:
            b = s.recv(4096)
            if not b:
                break
            got += b
    except (socket.timeout, OSError):
        pass
    return int(got.split()[1]) if got.startswith(b"HTTP/") else 0


def open_stream(path, who="read", method="GET", body=b""):
    """A request left open (a stream or long-poll) and its first status (0: none yet)."""
    s = sock()
    auth = "Authorization: Bearer %s\r\n" % TOK[who] if TOK.get(who) else ""
    extra = "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body) if body else ""
    s.sendall(("%s %s HTTP/1.1\r\nHost: t\r\n%s%s\r\n" % (method, path, auth, extra)).encode()
              + body)
    return s


def probe(name):
    def wrap(f):
        results.append((name, f))
        return f
    return wrap


class Fail(Exception):
    pass


def want(cond, what):
    if not cond:
        raise Fail(what)


# ---- fixtures ----
wid = {}
seq = [0]


def register(name, tok="reg", running=None):
    body = {"name": name, "cores": 64, "ram_mb": 65536, "platform": "x86_64-linux"}
    if running is not None:
        body["running"] = running
    return request(tok, "POST", "/api/v1/workers/register", body)


def enrol(name):
    """Register a worker; act with the credential it returns, or (old server:
    none returned) with the registration token itself."""
    st, js, data = register(name)
    if st != 200:
        raise Fail("cannot register %s: %s %s" % (name, st, data[:200]))
    TOK[name] = js.get("credential") or TOK["reg"]
    wid[name] = js["worker_id"]


def clean_queue():
    st, js, _ = request("admin", "GET", "/api/v1/jobs?state=queued&limit=1000")
    for j in (js or {}).get("jobs", []):
        request("admin", "POST", "/api/v1/jobs/%d/cancel" % j["id"])


def submit(who="subA", **extra):
    seq[0] += 1
    job = {"name": "p%d" % seq[0], "command": "true", "cores": 1, "ram_mb": 64}
    job.update(extra)
    st, js, data = request(who, "POST", "/api/v1/jobs", job)
    if st != 201:
        raise Fail("submit: %s %s" % (st, data[:200]))
    return js["jobs"][0]["id"]


def leased_job(worker="w1", **extra):
    """A job submitted by subA and leased to worker."""
    clean_queue()
    jid = submit(**extra)
    st, js, data = request(worker, "POST", "/api/v1/workers/%d/lease?wait=1" % wid[worker], {})
    got = (js or {}).get("job", {}).get("id")
    if st != 200 or got != jid:
        raise Fail("lease of job %d by %s: %s %s" % (jid, worker, st, data[:200]))
    return jid


def job_state(jid):
    return request("admin", "GET", "/api/v1/jobs/%d" % jid)[1]["state"]


def finish(jid, worker="w1"):
    request(worker, "POST", "/api/v1/jobs/%d/report" % jid, {"attempt": 1, "exit_code": 0})


# ---- worker identity ----
@probe("registration-token-only-registers")
def _():
    st = request("reg", "POST", "/api/v1/workers/%d/heartbeat" % wid["w1"], {})[0]
    st2 = request("reg", "POST", "/api/v1/workers/%d/lease?wait=0" % wid["w1"], {})[0]
    want(st in (401, 403) and st2 in (401, 403),
         "the registration token heartbeats (%d) and leases (%d) as worker w1" % (st, st2))


@probe("report-on-another-workers-job")
def _():
    jid = leased_job("w1")
    st = request("w2", "POST", "/api/v1/jobs/%d/report" % jid, {"attempt": 1, "exit_code": 0})[0]
    s = job_state(jid)
    finish(jid)
    want(st in (403, 409) and s != "succeeded",
         "w2 reported w1's job %d as passed: %d, job %s" % (jid, st, s))


@probe("lease-as-another-worker")
def _():
    clean_queue()
    jid = submit()
    st, js, _ = request("w2", "POST", "/api/v1/workers/%d/lease?wait=0" % wid["w1"], {})
    finish(jid)
    clean_queue()
    want(st in (401, 403), "w2 leased as w1: %d, got job %s"
         % (st, (js or {}).get("job", {}).get("id")))


@probe("heartbeat-as-another-worker")
def _():
    jid = leased_job("w1")
    st = request("w2", "POST", "/api/v1/workers/%d/heartbeat" % wid["w1"], {"running": []})[0]
    time.sleep(0.2)
    s = job_state(jid)
    finish(jid)
    want(st in (401, 403) and s in ("building", "testing"),
         "w2 heartbeat as w1 with running=[]: %d, w1's job %s" % (st, s))


@probe("register-takes-over-live-worker")
def _():
    jid = leased_job("w1")
    st, js, _ = register("w1", running=[])
    time.sleep(0.2)
    s = job_state(jid)
    finish(jid)
    want(st == 409 and s in ("building", "testing"),
         "registering the live name w1 again: %d, w1's job %d is %s" % (st, jid, s))


# ---- publishing ----
@probe("worker-publishes-catalog-entry")
def _():
    blob = b"planted by a worker\n"
    dg = "sha256:" + hashlib.sha256(blob).hexdigest()
    st1 = request("w1", "PUT", "/api/v1/catalog/blobs/" + dg, blob,
                  {"Content-Type": "application/octet-stream"})[0]
    st2, js, data = request("w1", "POST", "/api/v1/catalog",
                            {"digest": dg, "meta": {"name": "planted", "version": "9.9",
                                                    "recipe": "demo", "branch": "main"}})
    listed = b"planted" in request("read", "GET", "/api/v1/catalog")[2]
    want(st1 in (401, 403) and st2 in (401, 403) and not listed,
         "a worker uploaded a blob (%d) and published an entry (%d), listed: %s"
         % (st1, st2, listed))


# ---- ownership ----
@probe("submitter-cancels-others-job")
def _():
    clean_queue()
    jid = submit("subA")
    st = request("subB", "POST", "/api/v1/jobs/%d/cancel" % jid)[0]
    s = job_state(jid)
    want(st == 403 and s == "queued", "subB cancelled subA's job: %d, now %s" % (st, s))


@probe("submitter-retries-others-job")
def _():
    clean_queue()
    jid = submit("subA")
    request("subA", "POST", "/api/v1/jobs/%d/cancel" % jid)
    st = request("subB", "POST", "/api/v1/jobs/%d/retry" % jid)[0]
    s = job_state(jid)
    clean_queue()
    want(st == 403 and s == "cancelled", "subB retried subA's job: %d, now %s" % (st, s))


@probe("recipe-submission-supersedes-others")
def _():
    clean_queue()
    st, js, data = request("subA", "POST", "/api/v1/jobs", {"recipe": "demo", "branch": "main"})
    if st != 201:
        raise Fail("recipe submit: %d %s" % (st, data[:200]))
    mine = [j["id"] for j in js["jobs"]]
    st = request("subB", "POST", "/api/v1/jobs", {"recipe": "demo", "branch": "main"})[0]
    gone = [j for j in mine if job_state(j) == "superseded"]
    clean_queue()
    want(not gone, "subB's recipe submission (%d) superseded %d of subA's %d jobs"
         % (st, len(gone), len(mine)))


# ---- secrets ----
secret_job = [0]


def the_secret_job():
    """A job with a secret env value: marked secret where the server can, plain otherwise."""
    if secret_job[0]:
        return secret_job[0]
    clean_queue()
    seq[0] += 1
    job = {"name": "sec%d" % seq[0], "command": "echo $TOKEN", "cores": 1, "ram_mb": 64,
           "env": {"TOKEN": {"secret": SECRET}}}
    st, js, _ = request("subA", "POST", "/api/v1/jobs", job)
    if st == 400:  # the old server: no way to mark a value secret
        job["env"]["TOKEN"] = SECRET
        st, js, _ = request("subA", "POST", "/api/v1/jobs", job)
    if st != 201:
        raise Fail("submit with env: %d" % st)
    secret_job[0] = js["jobs"][0]["id"]
    return secret_job[0]


@probe("secret-env-visible-to-reader")
def _():
    jid = the_secret_job()
    a = request("read", "GET", "/api/v1/jobs/%d" % jid)[2]
    b = request("read", "GET", "/api/v1/jobs?limit=1000")[2]
    want(SECRET.encode() not in a + b, "a read token sees the env value in the job")


@probe("secret-env-visible-to-anonymous")
def _():
    jid = the_secret_job()
    st, _, a = request("anon", "GET", "/api/v1/jobs/%d" % jid)
    want(SECRET.encode() not in a, "an anonymous reader sees the env value (%d)" % st)


@probe("secret-env-in-sse-replay")
def _():
    the_secret_job()
    s = sock()
    s.sendall(("GET /api/v1/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
               "Last-Event-ID: 0\r\n\r\n" % TOK["read"]).encode())
    got = b""
    end = time.time() + 1.5
    s.settimeout(0.3)
    while time.time() < end:
        try:
            b = s.recv(65536)
        except socket.timeout:
            continue
        if not b:
            break
        got += b
    s.close()
    time.sleep(0.2)
    want(got.startswith(b"HTTP/1.1 200"), "no event stream: %r" % got[:80])
    want(SECRET.encode() not in got, "the SSE replay carries the env value")


@probe("secret-echoed-by-command-in-log")
def _():
    jid = the_secret_job()
    st, js, _ = request("w1", "POST", "/api/v1/workers/%d/lease?wait=1" % wid["w1"], {})
    want(st == 200 and (js or {}).get("job", {}).get("id") == jid, "lease: %d" % st)
    st = request("w1", "POST", "/api/v1/jobs/%d/log?attempt=1&offset=0" % jid,
                 "TOKEN is %s\n" % SECRET, {"Content-Type": "application/octet-stream"})[0]
    finish(jid)
    log = request("read", "GET", "/api/v1/jobs/%d/log" % jid)[2]
    want(st == 200, "log chunk: %d" % st)
    want(SECRET.encode() not in log, "the value the command echoed is in the log readers get")


# ---- resource guards ----
@probe("body-read-before-token")
def _():
    s = sock()
    s.sendall(b"POST /api/v1/jobs HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n{" % (8 << 20))
    st = status_line(s, 3 + SLACK_S)
    s.close()
    want(st == 401, "no token and 1 of 8 MiB sent: the server waits for the body (answer %s)"
         % (st or "none"))


@probe("one-byte-trickle-never-times-out")
def _():
    s = sock()
    s.sendall(("POST /api/v1/jobs HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
               "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
               % TOK["subA"]).encode())
    deadline = time.time() + LIM_BODY_MS / 1000.0 + SLACK_S
    st, closed = 0, False
    while time.time() < deadline:
        try:
            s.sendall(b" ")
        except OSError:
            closed = True
            break
        st = status_line(s, 0.25)
        if st:
            break
    s.close()
    want(st == 408 or closed, "a byte every 250 ms kept the body open past %d ms + %.0f s"
         % (LIM_BODY_MS, SLACK_S))


@probe("no-per-client-connection-cap")
def _():
    held = [sock() for _ in range(LIM_CONNS)]
    time.sleep(0.5)  # accepted (connect returns once the kernel has them queued)
    c = sock()
    c.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    st = status_line(c, 10)
    c.close()
    for s in held:
        s.close()
    time.sleep(0.3)
    want(st == 503, "connection %d from one client answered %d" % (LIM_CONNS + 1, st))


def cap_probe(opener, n, streams=True):
    """Hold n requests open, then the status of one more (0: none in 5 s).
    The held ones are seen by the server first: a stream's 200 is read; a
    long-poll has no answer yet, so the server's gauge is watched where it
    has one (the old server has none: a pause stands in)."""
    held = [opener() for _ in range(n)]
    if streams:
        for s in held:
            st = status_line(s, 10)
            if st != 200:
                raise Fail("held stream answered %s" % (st or "nothing"))
    else:
        end = time.time() + 5
        while time.time() < end:
            m = request("admin", "GET", "/metrics")[2]
            line = [x for x in m.split(b"\n") if x.startswith(b"kiln_lease_waiting ")]
            if not line or int(line[0].split()[1]) >= n:
                break
            time.sleep(0.1)
        time.sleep(0.3)
    extra = opener()
    st = status_line(extra, 5)
    for s in held + [extra]:
        s.close()
    time.sleep(0.3)
    return st


@probe("sse-streams-uncapped")
def _():
    st = cap_probe(lambda: open_stream("/api/v1/events"), LIM_STREAMS)
    want(st == 503, "event stream %d answered %s" % (LIM_STREAMS + 1, st or "nothing (held)"))


@probe("log-follows-uncapped")
def _():
    jid = leased_job("w1")
    st = cap_probe(lambda: open_stream("/api/v1/jobs/%d/log?follow=1" % jid), LIM_STREAMS)
    finish(jid)
    want(st == 503, "log follow %d answered %s" % (LIM_STREAMS + 1, st or "nothing (held)"))


@probe("lease-long-polls-uncapped")
def _():
    # One long-poll per worker (a server may keep one waiter per worker), so
    # only a cap on all of them together can refuse the last.
    clean_queue()
    names = ["lw%d" % i for i in range(LIM_LEASE_WAITS + 1)]
    for n in names:
        enrol(n)
    it = iter(names)

    def opener():
        n = next(it)
        return open_stream("/api/v1/workers/%d/lease?wait=30" % wid[n], n, "POST", b"{}")
    st = cap_probe(opener, LIM_LEASE_WAITS, streams=False)
    want(st == 503, "lease long-poll %d answered %s" % (LIM_LEASE_WAITS + 1, st or
                                                         "nothing (held)"))


@probe("logs-have-no-quota")
def _():
    chunk = "x" * 1000 + "\n"
    accepted, refused = 0, 0
    for _ in range(3):
        jid = leased_job("w1")
        off = 0
        for _ in range(4):
            st = request("w1", "POST", "/api/v1/jobs/%d/log?attempt=1&offset=%d" % (jid, off),
                         chunk, {"Content-Type": "application/octet-stream"})[0]
            if st == 200:
                accepted += len(chunk)
                off += len(chunk)
            elif st == 507:
                refused += 1
                break
            else:
                raise Fail("log chunk: %d" % st)
        finish(jid)
    want(refused and accepted <= LIM_LOG_QUOTA,
         "%d log bytes accepted over %d jobs, quota %d" % (accepted, 3, LIM_LOG_QUOTA))


# ---- webhooks ----
def hook(path, body, delivery, secret=HOOK_SECRET, event="ping"):
    sig = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return request("anon", "POST", path, body, {"X-GitHub-Event": event,
                                                "X-GitHub-Delivery": delivery,
                                                "X-Hub-Signature-256": sig,
                                                "Content-Type": "application/json"})


@probe("webhook-replay-with-new-delivery-id")
def _():
    body = b'{"zen":"replayed","hook_id":7}'
    st1, js1, _ = hook("/api/v1/hooks/github", body, "orig-1")
    st2, js2, _ = hook("/api/v1/hooks/github", body, "forged-2")
    want(st1 == 200, "signed ping: %d" % st1)
    want((js2 or {}).get("duplicate") is True,
         "the same signed body under a new delivery id was taken as new: %d %s" % (st2, js2))


@probe("global-secret-triggers-own-secret-repo")
def _():
    body = json.dumps({"ref": "refs/heads/main", "after": "0" * 40,
                       "repository": {"clone_url": OWN_REPO_URL, "full_name": "o/own"}}).encode()
    st, js, _ = hook("/api/v1/hooks/github", body, "own-1", event="push")
    want(st == 401, "a push signed with the global secret for a repo with its own: %d %s"
         % (st, js))


@probe("hooks-exact-path-reads-query-as-forge")
def _():
    st, js, _ = hook("/api/v1/hooks?github", b'{"zen":"query","hook_id":8}', "q-1")
    want(st == 404, "POST /api/v1/hooks?github: %d %s" % (st, js))


def main():
    try:
        enrol("w1")
        enrol("w2")
    except Fail as e:
        print("FAIL setup: %s" % e)
        return 1
    npass = nfail = 0
    for name, f in results:
        try:
            f()
            print("PASS %s" % name)
            npass += 1
        except Fail as e:
            print("FAIL %s: %s" % (name, e))
            nfail += 1
        except Exception as e:  # a probe that broke is a failure, said plainly
            print("FAIL %s: %s: %s" % (name, type(e).__name__, e))
            nfail += 1
        sys.stdout.flush()
    print("%d passed, %d failed" % (npass, nfail))
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
