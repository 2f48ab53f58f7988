"""bench/lib/kiln_client.py - the few API calls the shell benches need,
over one keep-alive connection (a curl process per call would cost the
machine more than the job it submits).

  python3 kiln_client.py URL TOKEN submit N [JSON]   -> prints first and last id
  python3 kiln_client.py URL TOKEN wait N TIMEOUT_S [READY_FILE]
      -> waits until N jobs are final, prints "done N first_start
      last_finish" from the jobs' own times; creates READY_FILE after its
      first answer, so a bench can start the work once this client (and
      the interpreter's start, which is not free) is out of the way
  python3 kiln_client.py URL TOKEN pages STATE       -> reads every job in STATE
      page by page (limit 1000), prints the count
  python3 kiln_client.py URL TOKEN time PATH K        -> GETs PATH K times on one
      keep-alive connection, prints the median wall ms
"""
import http.client
import json
import sys
import time
import urllib.parse


class Api:
    def __init__(self, url, token):
        u = urllib.parse.urlparse(url)
        self.host, self.port = u.hostname, u.port
        self.token = token
        self.c = http.client.HTTPConnection(self.host, self.port, timeout=60)

    def call(self, method, path, body=None):
        h = {"Authorization": "Bearer " + self.token} if self.token else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        self.c.request(method, "/api/v1" + path, body=data, headers=h)
        r = self.c.getresponse()
        raw = r.read()
        return r.status, (json.loads(raw) if raw else None)


def jobs_all(api, state=None):
    """Every job (newest first pages)."""
    out, before = [], None
    while True:
        q = "/jobs?limit=1000" + ("&state=" + state if state else "") + \
            ("&before_id=%d" % before if before else "")
        st, d = api.call("GET", q)
        if st != 200:
            raise SystemExit("GET /jobs: %d" % st)
        out += d["jobs"]
        before = d.get("next_before_id")
        if not before:
            return out


def main():
    url, token, cmd = sys.argv[1], sys.argv[2], sys.argv[3]
    api = Api(url, token)
    if cmd == "submit":
        n = int(sys.argv[4])
        spec = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {
            "name": "noop", "command": "true", "cores": 1, "ram_mb": 64}
        ids = []
        for _ in range(n):
            st, d = api.call("POST", "/jobs", spec)
            if st != 201:
                raise SystemExit("submit: HTTP %d %s" % (st, d))
            ids.append(d["jobs"][0]["id"])
        print(ids[0], ids[-1])
    elif cmd == "wait":
        n, timeout = int(sys.argv[4]), float(sys.argv[5])
        ready = sys.argv[6] if len(sys.argv) > 6 else None
        end = time.time() + timeout
        final = ("succeeded", "failed", "cancelled", "superseded")
        while True:
            st, d = api.call("GET", "/jobs?limit=1")
            if ready:
                open(ready, "w").close()
                ready = None
            c = d.get("counts", {})
            done = sum(c.get(k, 0) for k in final)
            if done >= n:
                break
            if time.time() > end:
                raise SystemExit("wait: only %d of %d jobs final: %s" % (done, n, c))
            # The figure comes from the jobs' own times, so a slower poll
            # loses nothing and takes less of the machine the jobs run on.
            time.sleep(0.2)
        jobs = jobs_all(api)
        bad = [j for j in jobs if j["state"] != "succeeded"]
        if bad:
            raise SystemExit("wait: %d jobs did not succeed, e.g. %s" % (len(bad), bad[0]))
        first = min(j["started_at"] for j in jobs)
        last = max(j["finished_at"] for j in jobs)
        print("done", len(jobs), "%.6f %.6f" % (first, last))
    elif cmd == "time":
        path, k = sys.argv[4], int(sys.argv[5])
        ts = []
        for _ in range(k):
            t = time.perf_counter()
            st, _ = api.call("GET", path)
            ts.append((time.perf_counter() - t) * 1000)
            if st != 200:
                raise SystemExit("GET %s: %d" % (path, st))
        print("%.2f" % sorted(ts)[k // 2])
    elif cmd == "pages":
        print(len(jobs_all(api, sys.argv[4])))
    else:
        raise SystemExit("unknown command " + cmd)


if __name__ == "__main__":
    main()
