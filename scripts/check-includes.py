#!/usr/bin/env python3
"""check-includes.py - the folders are the architecture: fail on an include
that goes up a layer, or on a cycle between headers.

Each source folder has a layer; a file may include headers of its own folder
or of a strictly lower layer. workers/ runs on build hosts and talks to the
server over HTTP only, so it must not include any server-side folder even
where the layers would allow it. tests/ and bench/ may include anything.
Prints one line per violation and exits 1, or prints "includes: ok".
"""
import os
import re
import sys

# Bottom-up. Keep docs/ARCHITECTURE.md's folder graph in step with this table.
LAYERS = {
    "common": 0,
    "nix": 1, "recipes": 1, "kernels-selftest": 1, "scheduler": 1, "http": 1,
    "state": 2, "workers": 2,
    "server": 3,
    "catalog": 4, "git": 4, "slurm": 4, "forge": 4,
    "cli": 5,
}
SERVER_SIDE = {"http", "state", "server", "catalog", "git", "forge", "scheduler"}
INC = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def main(root):
    bad = []
    headers = {}
    for folder in LAYERS:
        d = os.path.join(root, folder)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if not name.endswith((".c", ".h", ".cu")):
                continue
            path = folder + "/" + name
            text = open(os.path.join(root, path), errors="replace").read()
            incs = INC.findall(text)
            if name.endswith(".h"):
                headers[path] = [i for i in incs if "/" in i]
            for inc in incs:
                if "/" not in inc:
                    bad.append(f"{path}: #include \"{inc}\" must name its folder (folder/file.h)")
                    continue
                tgt = inc.split("/", 1)[0]
                if tgt == folder:
                    continue
                if tgt not in LAYERS:
                    bad.append(f"{path}: includes \"{inc}\" from unknown folder '{tgt}'")
                elif LAYERS[tgt] >= LAYERS[folder]:
                    bad.append(f"{path}: includes \"{inc}\", but {tgt}/ (layer {LAYERS[tgt]}) "
                               f"is not below {folder}/ (layer {LAYERS[folder]})")
                elif folder == "workers" and tgt in SERVER_SIDE:
                    bad.append(f"{path}: workers/ must not include the server-side {inc}")
    # Cycles between headers (include guards hide them from the compiler).
    state = {}

    def dfs(h, stack):
        state[h] = 1
        stack.append(h)
        for nxt in headers.get(h, []):
            if state.get(nxt) == 1:
                bad.append("include cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif not state.get(nxt) and nxt in headers:
                dfs(nxt, stack)
        stack.pop()
        state[h] = 2

    for h in sorted(headers):
        if not state.get(h):
            dfs(h, [])
    for line in bad:
        print(line)
    if bad:
        print(f"includes: {len(bad)} violation(s) (see scripts/check-includes.py)")
        return 1
    print("includes: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
