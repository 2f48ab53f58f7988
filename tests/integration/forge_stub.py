#!/usr/bin/env python3
"""A local forge for tests: GitHub, Gitea/Forgejo and GitLab commit-status
endpoints under /gh, /gitea and /gitlab on 127.0.0.1. It checks each request
against the shape its forge documents (path, JSON body keys, states, token),
answers 201 (or 500 while told to fail), and records everything.

  forge_stub.py PORTFILE        prints nothing; writes the port to PORTFILE
  GET  /_log                    -> [{"forge","path","sha","project","auth","body","answer","bad"}]
  POST /_fail {"prefix": "/gh", "count": -1|N|0}   fail the next N (-1: all) requests there
"""
import json, re, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SHAPES = {
    # forge: (path regex, body keys, states, token)
    "github": (r"^/gh/repos/([^/]+)/([^/]+)/statuses/([0-9a-f]{40})$",
               {"state", "target_url", "description", "context"},
               {"pending", "success", "failure", "error"}, "tok-gh"),
    "gitea": (r"^/gitea/api/v1/repos/([^/]+)/([^/]+)/statuses/([0-9a-f]{40})$",
              {"state", "target_url", "description", "context"},
              {"pending", "success", "error", "failure", "warning"}, "tok-gitea"),
    "gitlab": (r"^/gitlab/api/v4/projects/([^/]+)/statuses/([0-9a-f]{40})$",
               {"state", "name", "target_url", "description"},
               {"pending", "running", "success", "failed", "canceled"}, "tok-gitlab"),
}
log, fail, lock = [], {}, threading.Lock()


class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def reply(self, code, obj):
        b = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def do_GET(self):
        if self.path == "/_log":
            with lock:
                return self.reply(200, log)
        self.reply(404, {"message": "not found"})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n)
        if self.path == "/_fail":
            c = json.loads(raw)
            with lock:
                fail[c["prefix"]] = c["count"]
            return self.reply(200, {})
        forge = {"/gh/": "github", "/gitea/": "gitea", "/gitlab/": "gitlab"}.get(
            "/" + self.path.split("/")[1] + "/")
        rec = {"forge": forge, "path": self.path, "auth": self.headers.get("Authorization"),
               "bad": []}
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        rec["body"] = body
        if forge is None:
            rec["bad"].append("unknown path")
        else:
            rx, keys, states, tok = SHAPES[forge]
            m = re.match(rx, self.path)
            if not m:
                rec["bad"].append("path does not match " + rx)
            else:
                rec["sha"] = m.groups()[-1]
                if forge == "gitlab":
                    rec["project"] = m.group(1)
            if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
                rec["bad"].append("content type " + str(self.headers.get("Content-Type")))
            if not isinstance(body, dict) or set(body) != keys:
                rec["bad"].append("body keys %s, want %s" % (sorted(body or {}), sorted(keys)))
            elif body["state"] not in states:
                rec["bad"].append("state " + str(body["state"]))
            elif len(body["description"]) > 140:
                rec["bad"].append("description over 140 characters")
            if rec["auth"] != "Bearer " + tok:
                rec["bad"].append("auth " + str(rec["auth"]))
        with lock:
            prefix = "/" + self.path.split("/")[1]
            left = fail.get(prefix, 0)
            if left:
                fail[prefix] = left - 1 if left > 0 else left
                rec["answer"] = 500
            else:
                rec["answer"] = 422 if rec["bad"] else 201
            log.append(rec)
        self.reply(rec["answer"], {"id": len(log)} if rec["answer"] == 201 else {"message": "no"})


s = ThreadingHTTPServer(("127.0.0.1", 0), H)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(s.server_address[1]))
import os
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
s.serve_forever()
