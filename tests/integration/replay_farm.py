#!/usr/bin/env python3
"""replay_farm.py - drive `kiln serve` with a 200-job mixed run on 3 fake
workers speaking the agent protocol (docs/API.md), for test_replay.sh.

The jobs: 64 GPU variants from two recipes (each a build stage and a GPU test
stage; one recipe uses sm_compat) and 136 ad hoc builds of mixed size and
priority, every fifth depending on the one before. One queued job is
cancelled (its dependent fails with it) and worker w3 goes silent while it
runs a job, so the server declares it lost and requeues that job.

Jobs "run" by sleeping a little; the durations do not matter to the test,
which compares the service's recorded decisions with a replay. Exit 0 when
every job ended as expected, 1 otherwise (with a sentence why).

usage: replay_farm.py URL ADMIN_TOKEN WORKER_TOKEN
"""
import json
import sys
import threading
import time
import urllib.error
import urllib.request

URL, ADMIN, WTOK = sys.argv[1], sys.argv[2], sys.argv[3]
ISA = ["avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512vl", "avx512bw"]


def call(tok, method, path, body=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(URL + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + tok)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, None


class Worker:
    def __init__(self, name, cores, ram_mb, gpus, die_after=None):
        self.name, self.cores, self.ram = name, cores, ram_mb
        self.gpus = gpus
        self.die_after = die_after  # go silent while running this many-th job
        self.running = {}  # job id -> lease
        self.started = 0
        self.dead = False
        self.held = None  # the job it went silent with
        self.lock = threading.Lock()
        body = {"name": name, "cores": cores, "ram_mb": ram_mb, "platform": "x86_64-linux",
                "isa_features": ISA, "labels": {}, "running": [],
                "gpus": [{"index": i, "name": "GPU", "sm": sm, "memory_mb": 81920,
                          "driver": "580.65.06"} for i, sm in enumerate(gpus)]}
        st, o = call(WTOK, "POST", "/workers/register", body)
        assert st == 200, (st, o)
        self.id = o["worker_id"]
        # lease, heartbeat and report need the worker's own credential
        self.tok = o.get("credential") or WTOK

    def free(self):
        with self.lock:
            c = self.cores - sum(l["cores"] for l in self.running.values())
            r = self.ram - sum(l["ram_mb"] for l in self.running.values())
            used = {l.get("gpu_index") for l in self.running.values()}
            g = [i for i in range(len(self.gpus)) if i not in used]
        return c, r, g

    def finish(self, lease):
        if self.dead:
            return
        with self.lock:
            self.running.pop(lease["id"], None)
        call(self.tok, "POST", "/jobs/%d/report" % lease["id"],
             {"attempt": lease["attempt"], "stage": lease["stage"], "exit_code": 0})

    def lease_loop(self, stop):
        while not stop.is_set() and not self.dead:
            c, r, g = self.free()
            if c <= 0 or r <= 0:
                time.sleep(0.02)
                continue
            st, o = call(self.tok, "POST", "/workers/%d/lease?wait=2" % self.id,
                         {"free_cores": c, "free_ram_mb": r, "free_gpus": g})
            if self.dead:
                return
            if st == 200 and o and "job" in o:
                l = o["job"]
                with self.lock:
                    self.running[l["id"]] = l
                    self.started += 1
                    n = self.started
                if self.die_after and n >= self.die_after:
                    self.held = l["id"]
                    self.dead = True  # silent from now on: no report, no heartbeat
                    return
                threading.Timer(0.05 + (l["id"] % 4) * 0.05, self.finish, (l,)).start()
            elif st == 200 and o and "cancel" in o:
                with self.lock:
                    for j in o["cancel"]:
                        self.running.pop(j, None)
            elif st not in (200, 204):
                time.sleep(0.1)

    def heartbeat_loop(self, stop):
        while not stop.is_set() and not self.dead:
            with self.lock:
                run = [{"job": j, "attempt": l["attempt"]} for j, l in self.running.items()]
            st, o = call(self.tok, "POST", "/workers/%d/heartbeat" % self.id, {"running": run})
            if st == 200 and o:
                with self.lock:
                    for j in o.get("cancel", []):
                        self.running.pop(j, None)
            stop.wait(0.5)


RECIPE = """recipe: %s
default_branch: main
axes:
  sm:
%s
  isa:
    - avx2: {}
    - avx512: {}
  flavor:
%s
attrs:
  platform: x86_64-linux
branches:
  main: {}
templates:
  name: "%s-sm{sm}-{isa}-{flavor}"
  command: "true"
resources:
  cores: 2
  ram_mb: 2048
  est_duration_s: 30
selftest:
  sm: "{sm}"
  isa: "{isa}"
  sm_compat: %s
  driver_min: 560
  checks:
    - name: smoke
      command: "true"
"""


def recipe(name, sms, flavors, compat):
    return RECIPE % (name, "\n".join("    - %s: {}" % s for s in sms),
                     "\n".join("    - %s: {}" % f for f in flavors), name,
                     "true" if compat else "false")


def main():
    # w1: big GPU host; w2: smaller, SM 89 + SM 80; w3: CPU only, goes silent.
    ws = [Worker("w1", 16, 32768, ["90", "90"]), Worker("w2", 8, 16384, ["89", "80"]),
          Worker("w3", 8, 16384, [], die_after=6)]
    stop = threading.Event()
    threads = []
    for w in ws:
        for fn in (w.lease_loop, w.heartbeat_loop):
            t = threading.Thread(target=fn, args=(stop,), daemon=True)
            t.start()
            threads.append(t)
    # Every worker holds a lease request before the first submit, so the
    # first pass chooses among three asking hosts (where spread and pack
    # differ: the replay's negative check relies on it).
    for _ in range(600):
        req = urllib.request.Request(URL.replace("/api/v1", "") + "/metrics")
        req.add_header("Authorization", "Bearer " + ADMIN)
        with urllib.request.urlopen(req, timeout=10) as r:
            m = r.read().decode()
        if "kiln_lease_waiting 3" in m:
            break
        time.sleep(0.05)
    else:
        print("FAIL: the three workers never all waited for work")
        return 1
    ids = []
    st, o = call(ADMIN, "POST", "/jobs", {"recipe_yaml": recipe(
        "gpa", ["80", "89", "90"], ["a", "b", "c", "d", "e", "f", "g", "h"], False)})
    assert st == 201, (st, o)
    ids += [j["id"] for j in o["jobs"]]
    st, o = call(ADMIN, "POST", "/jobs", {"recipe_yaml": recipe(
        "gpc", ["80", "86"], ["a", "b", "c", "d"], True)})
    assert st == 201, (st, o)
    ids += [j["id"] for j in o["jobs"]]
    prev = None
    victim = dependent = None
    for i in range(136):
        spec = {"name": "adhoc-%d" % i, "command": "true", "cores": [1, 2, 4, 1, 8][i % 5],
                "ram_mb": [256, 1024, 4096, 512][i % 4], "priority": 5 if i % 7 == 0 else 0}
        if i % 5 == 4 and prev:
            spec["depends"] = [prev]
        if i == 120:
            # bigger than any host: certain to be queued when cancelled
            spec["cores"] = 64
        if i == 121:
            spec["depends"] = [victim]  # fails when its dependency is cancelled
        st, o = call(ADMIN, "POST", "/jobs", spec)
        assert st == 201, (st, o)
        prev = o["jobs"][0]["id"]
        ids.append(prev)
        if i == 120:
            victim = prev
        if i == 121:
            dependent = prev
    # The cancel: a queued job waiting on its dependency.
    st, o = call(ADMIN, "POST", "/jobs/%d/cancel" % victim)
    assert st == 200, ("cancel", st, o)
    assert len(ids) == 200, len(ids)
    deadline = time.time() + 240
    while time.time() < deadline:
        st, o = call(ADMIN, "GET", "/jobs?limit=1000")
        states = {}
        for j in o["jobs"]:
            states[j["state"]] = states.get(j["state"], 0) + 1
        if sum(states.get(s, 0) for s in ("succeeded", "failed", "cancelled")) == 200:
            break
        time.sleep(0.2)
    stop.set()
    st, o = call(ADMIN, "GET", "/jobs?limit=1000")
    jobs = {j["id"]: j for j in o["jobs"]}
    states = {}
    for j in jobs.values():
        states[j["state"]] = states.get(j["state"], 0) + 1
    print("states: %s" % json.dumps(states, sort_keys=True))
    if jobs[victim]["state"] != "cancelled":
        print("FAIL: the cancelled job is %s" % jobs[victim]["state"])
        return 1
    st, wo = call(ADMIN, "GET", "/workers")
    w3 = [w for w in wo["workers"] if w["name"] == "w3"][0]
    if w3["state"] != "lost":
        print("FAIL: w3 went silent but is %s" % w3["state"])
        return 1
    held = jobs[ws[2].held]
    if held["state"] != "succeeded" or held["worker"] == "w3":
        print("FAIL: the job w3 held when it went silent is %s on %s" % (held["state"],
                                                                         held["worker"]))
        return 1
    tested = [j for j in jobs.values() if j.get("stages") and "test" in j["stages"]
              and j["state"] == "succeeded"]
    if jobs[dependent]["state"] != "failed":
        print("FAIL: the cancelled job's dependent is %s" % jobs[dependent]["state"])
        return 1
    if states != {"succeeded": 198, "cancelled": 1, "failed": 1}:
        print("FAIL: want 198 succeeded, 1 cancelled, 1 failed")
        return 1
    print("ok: 200 jobs ended (%d GPU-tested), 1 cancelled, w3 lost and its job %d rerun on %s"
          % (len(tested), held["id"], held["worker"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
