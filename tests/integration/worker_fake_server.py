#!/usr/bin/env python3
"""A small stand-in for `kiln serve`'s worker endpoints (docs/API.md,
"Workers"), used to test the worker agent on its own: register, lease
(long-poll), heartbeat (cancel, drain), log by offset, report, plus /test/*
control endpoints. State (jobs, logs) lives in a directory so a restarted
fake server continues where it stopped, like the real one.

usage: worker_fake_server.py PORT TOKEN STATE_DIR [HEARTBEAT_S] [LOST_AFTER_S] [BIND]
"""
import hashlib
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PORT, TOKEN, DIR = int(sys.argv[1]), sys.argv[2], sys.argv[3]
HB = int(sys.argv[4]) if len(sys.argv) > 4 else 2
LOST = int(sys.argv[5]) if len(sys.argv) > 5 else 6
BIND = sys.argv[6] if len(sys.argv) > 6 else "127.0.0.1"
lock = threading.Condition()
os.makedirs(DIR, exist_ok=True)
STATE = os.path.join(DIR, "state.json")
if os.path.exists(STATE):
    with open(STATE) as f:
        st = json.load(f)
    # like the real server: workers get a fresh grace period after a restart
    for w in st["workers"].values():
        w["last_seen"] = time.time()
else:
    st = {"jobs": {}, "workers": {}, "next_job": 1, "next_worker": 1}


def save():
    tmp = STATE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(st, f)
    os.replace(tmp, STATE)


def logpath(jid):
    return os.path.join(DIR, "log-%s" % jid)


def logsize(jid):
    try:
        return os.path.getsize(logpath(jid))
    except OSError:
        return 0


def requeue(j, why):
    j["attempt"] += 1
    j["state"] = "queued"
    j["worker"] = None
    j["history"].append(why)
    try:
        os.unlink(logpath(j["id"]))
    except OSError:
        pass


def fits(j, w, free):
    r = j["resources"]
    if r.get("platform") and r["platform"] != w["platform"]:
        return False
    if r.get("isa") and r["isa"] not in w.get("isa_levels", []) and r["isa"] not in w.get("isa_features", []):
        return False
    if r.get("gpu_sm"):
        sms = {g["index"]: g["sm"] for g in w.get("gpus", [])}
        if not any(sms.get(i) == r["gpu_sm"] for i in free.get("free_gpus", [])):
            return False
    return r.get("cores", 1) <= free.get("free_cores", 0) and r.get("ram_mb", 0) <= free.get("free_ram_mb", 0)


def reaper():
    while True:
        time.sleep(0.5)
        with lock:
            now = time.time()
            for w in st["workers"].values():
                if w["state"] != "lost" and now - w["last_seen"] > LOST:
                    w["state"] = "lost"
                    for j in st["jobs"].values():
                        if j["worker"] == w["id"] and j["state"] == "building":
                            requeue(j, "worker %s lost" % w["name"])
                    save()
                    lock.notify_all()


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, code, obj=None, raw=None, ctype="application/json"):
        body = raw if raw is not None else (json.dumps(obj).encode() if obj is not None else b"")
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def err(self, code, msg, **extra):
        d = {"error": {"code": "x", "message": msg}}
        d.update(extra)
        self.send(code, d)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        u = urlparse(self.path)
        p = u.path.strip("/").split("/")
        with lock:
            if p[:2] == ["test", "jobs"] and len(p) == 3:
                j = st["jobs"].get(p[2])
                if not j:
                    return self.err(404, "no job")
                d = dict(j)
                d["log_size"] = logsize(p[2])
                try:
                    with open(logpath(p[2]), "rb") as f:
                        d["log_sha256"] = hashlib.sha256(f.read()).hexdigest()
                except OSError:
                    d["log_sha256"] = hashlib.sha256(b"").hexdigest()
                return self.send(200, d)
            if p[:2] == ["test", "log"]:
                try:
                    with open(logpath(p[2]), "rb") as f:
                        return self.send(200, raw=f.read(), ctype="text/plain")
                except OSError:
                    return self.send(200, raw=b"", ctype="text/plain")
            if p[:2] == ["test", "workers"]:
                return self.send(200, st["workers"])
        self.err(404, "not found")

    def do_POST(self):
        u = urlparse(self.path)
        q = parse_qs(u.query)
        p = u.path.strip("/").split("/")
        data = self.body()
        if p[0] == "test":
            return self.test_ctl(p, data)
        # Like kiln serve: the registration token, or a credential it issued.
        auth = self.headers.get("Authorization", "")
        if auth != "Bearer " + TOKEN and auth[7:] not in st.setdefault("creds", {}):
            return self.err(401, "bad token")
        if p[:2] != ["api", "v1"]:
            return self.err(404, "not found")
        p = p[2:]
        if p == ["workers", "register"]:
            return self.register(json.loads(data))
        if p[0] == "workers" and len(p) == 3:
            w = st["workers"].get(p[1])
            if not w:
                return self.err(404, "no such worker")
            with lock:
                w["last_seen"] = time.time()
                if w["state"] == "lost":
                    return self.err(404, "worker was lost; register again")
            if p[2] == "heartbeat":
                with lock:
                    b = json.loads(data)
                    w["hb"] = w.get("hb", 0) + 1
                    c = w.pop("cancel", [])
                    save()
                    return self.send(200, {"cancel": c, "drain": w.get("drain", False)})
            if p[2] == "lease":
                return self.lease(w, json.loads(data), float(q.get("wait", ["30"])[0]))
        if p[0] == "jobs" and len(p) == 3:
            with lock:
                j = st["jobs"].get(p[1])
                if not j:
                    return self.err(404, "no such job")
                if p[2] == "log":
                    att, off = int(q["attempt"][0]), int(q["offset"][0])
                    if att != j["attempt"] or j["state"] != "building":
                        return self.err(409, "stale attempt")
                    size = logsize(p[1])
                    if off > size:
                        return self.err(409, "offset beyond the log", size=size)
                    skip = size - off
                    if skip < len(data):
                        with open(logpath(p[1]), "ab") as f:
                            f.write(data[skip:])
                    st.setdefault("chunks", 0)
                    return self.send(200, {"size": logsize(p[1])})
                if p[2] == "report":
                    b = json.loads(data)
                    if b["attempt"] != j["attempt"] or j["state"] != "building":
                        return self.err(409, "stale report")
                    if b.get("infra"):
                        requeue(j, "infra: %s" % b.get("reason"))
                    else:
                        j["state"] = "succeeded" if b["exit_code"] == 0 else "failed"
                    j["report"] = b
                    j["reports"] = j.get("reports", 0) + 1
                    save()
                    lock.notify_all()
                    return self.send(200, {"state": j["state"]})
        self.err(404, "not found")

    def register(self, b):
        with lock:
            w = next((w for w in st["workers"].values() if w["name"] == b["name"]), None)
            if not w:
                wid = str(st["next_worker"])
                st["next_worker"] += 1
                w = {"id": wid}
                st["workers"][wid] = w
            w.update({k: b.get(k) for k in ("name", "cores", "ram_mb", "platform", "isa_features", "isa_levels", "gpus", "labels")})
            w["state"] = "online"
            w["last_seen"] = time.time()
            w["registrations"] = w.get("registrations", 0) + 1
            cancel = []
            for r in b.get("running", []):
                j = st["jobs"].get(str(r["job"]))
                if not j or j["worker"] != w["id"] or j["attempt"] != r["attempt"] or j["state"] != "building":
                    cancel.append(r["job"])
                else:
                    j["reattached"] = j.get("reattached", 0) + 1
            cred = "kiln_" + os.urandom(24).hex()
            st.setdefault("creds", {})[cred] = w["id"]
            save()
            lock.notify_all()
            return self.send(200, {"worker_id": int(w["id"]), "credential": cred, "heartbeat_s": HB,
                                   "lost_after_s": LOST, "cancel": cancel})

    def lease(self, w, free, wait):
        end = time.time() + wait
        with lock:
            while True:
                if w.get("cancel"):
                    c = w.pop("cancel")
                    return self.send(200, {"cancel": c})
                if not w.get("drain"):
                    for j in sorted(st["jobs"].values(), key=lambda j: int(j["id"])):
                        if j["state"] == "queued" and fits(j, w, free):
                            j["state"] = "building"
                            j["worker"] = w["id"]
                            j["runs"].append({"worker": w["name"], "attempt": j["attempt"]})
                            gi = None
                            if j["resources"].get("gpu_sm"):
                                gi = next(i for i in free["free_gpus"] if any(g["index"] == i and g["sm"] == j["resources"]["gpu_sm"] for g in w["gpus"]))
                            save()
                            r = j["resources"]
                            return self.send(200, {"job": {"id": int(j["id"]), "attempt": j["attempt"], "stage": "build",
                                                           "name": j["name"], "command": j["command"], "env": j.get("env", {}),
                                                           "cores": r.get("cores", 1), "ram_mb": r.get("ram_mb", 0),
                                                           "timeout_s": j.get("timeout_s", 600), "gpu_index": gi,
                                                           "selftest": None, "attrs": {}}})
                left = end - time.time()
                if left <= 0:
                    self.send_response(204)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                lock.wait(min(left, 0.5))

    def test_ctl(self, p, data):
        with lock:
            if p[1] == "jobs":
                b = json.loads(data)
                jid = str(st["next_job"])
                st["next_job"] += 1
                st["jobs"][jid] = {"id": jid, "name": b.get("name", "job" + jid), "command": b["command"],
                                   "env": b.get("env", {}), "resources": b.get("resources", {}),
                                   "timeout_s": b.get("timeout_s", 600), "state": "queued", "attempt": 1,
                                   "worker": None, "runs": [], "history": []}
                save()
                lock.notify_all()
                return self.send(201, {"id": int(jid)})
            if p[1] == "cancel":
                j = st["jobs"][p[2]]
                j["state"] = "cancelled"
                if j["worker"]:
                    st["workers"][j["worker"]].setdefault("cancel", []).append(int(p[2]))
                save()
                lock.notify_all()
                return self.send(200, {})
            if p[1] == "drain":
                w = next(w for w in st["workers"].values() if w["name"] == p[2])
                w["drain"] = json.loads(data).get("drain", True)
                save()
                return self.send(200, {})
        self.err(404, "not found")


threading.Thread(target=reaper, daemon=True).start()
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer.allow_reuse_address = True
ThreadingHTTPServer((BIND, PORT), H).serve_forever()
