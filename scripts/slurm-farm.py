#!/usr/bin/env python3
"""slurm-farm.py - a Slurm partition as a `kiln sim` farm (hosts YAML).

    scripts/slurm-farm.py --config kiln.yaml [--pool NAME] > farm.yaml
    kiln sim --farm farm.yaml recipes/vllm.yaml

Reads the pool's partition from `sinfo` (run with argv, never a shell; the
cluster is whatever SLURM_CONF points at) and maps each node the way the
Slurm executor does: its GRES through the pool's `gpus` map (gpu:h100 -> SM
90) and its node features through `isa_features` (x86-64-v3 -> avx2). Nodes
that are down or drained are left out, as the executor leaves them out of
the pool's size. --sinfo FILE reads saved `sinfo -h -N -o %N|%c|%m|%G|%f|%t`
output instead (for planning away from the cluster).
"""
import argparse
import json
import subprocess
import sys

try:
    import yaml  # PyYAML, when present
except ImportError:  # pragma: no cover
    yaml = None


def load_pool(path, name):
    text = open(path).read()
    doc = yaml.safe_load(text) if yaml else json.loads(text)
    pools = (doc or {}).get("slurm", {}).get("pools", [])
    for p in pools:
        if name is None or p.get("name") == name:
            return p
    sys.exit(f"slurm-farm: no slurm pool {name or ''} in {path}")


def gres_count(gres, kind):
    n = 0
    for part in gres.split(","):
        if part.startswith(kind + ":"):
            rest = part[len(kind) + 1:].split("(")[0]
            n += int(rest) if rest.isdigit() else 0
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--pool")
    ap.add_argument("--sinfo")
    a = ap.parse_args()
    pool = load_pool(a.config, a.pool)
    if a.sinfo:
        out = open(a.sinfo).read()
    else:
        argv = ["sinfo", "-h", "-N", "-o", "%N|%c|%m|%G|%f|%t"]
        if pool.get("partition"):
            argv += ["-p", pool["partition"]]
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    gpus = pool.get("gpus", {})
    isa = pool.get("isa_features", {})
    driver = str(pool.get("driver", 999))
    seen = set()
    hosts = []
    for line in out.splitlines():
        f = line.split("|")
        if len(f) != 6 or f[0] in seen:
            continue
        seen.add(f[0])
        name, cpus, mem, gres, feats, state = f
        if any(s in state for s in ("down", "drain", "fail")):
            continue
        feats = set(feats.split(","))
        h = {"name": name, "platform": pool.get("platform", "x86_64-linux"),
             "cores": int(cpus), "ram": f"{int(mem)}MiB"}
        levels = [lvl for lvl, feat in isa.items() if feat in feats]
        if levels:
            h["isa"] = levels
        g = []
        for sm, m in gpus.items():
            n = gres_count(gres, m["gres"]) if m.get("gres") else 0
            if not n and m.get("feature") in feats:
                n = 1
            if n:
                g.append({"model": m.get("gres") or m.get("feature"), "sm": sm,
                          "driver": driver, "count": n})
        if g:
            h["gpus"] = g
        hosts.append(h)
    if not hosts:
        sys.exit("slurm-farm: sinfo listed no usable node")
    print(f"# kiln sim farm from Slurm partition {pool.get('partition') or '(default)'}, pool {pool['name']}")
    print("hosts:")
    for h in hosts:
        print(f"  - {json.dumps(h)}")


if __name__ == "__main__":
    main()
