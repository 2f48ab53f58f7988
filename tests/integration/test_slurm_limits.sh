#!/usr/bin/env bash
# The Slurm executor against a real Slurm: what a stage asks of Slurm and
# what comes back.
#   1. sbatch got the stage's cores, memory, time, name and comment;
#      NIX_BUILD_CORES inside a real nix-build equals the cores Slurm granted
#      (SLURM_CPUS_PER_TASK), and the exit code and peak RAM come back.
#   2. Shell metacharacters in env values reach the job literally; nothing
#      of them is in Slurm's command line; names with them are refused.
#   3. A stage that allocates twice its RAM is killed by Slurm's cgroup and
#      `kiln show` says so plainly.
#   4. A stage Slurm cannot place yet shows Slurm's reason as wait_reason.
#   5. The live log of a running Slurm stage grows while it runs.
#   6. kiln sim on the partition as a farm.
#   7. A stage holding ~200 MiB reports the peak RAM Slurm measured (sstat
#      MaxRSS of the batch step, jobacct_gather/cgroup every second), and
#      `kiln show` prints it like an agent's.
set -u
. "$(dirname "$0")/lib_slurm.sh"
slurm_test_setup slurm-lim
slurm_id_of() { squeue -h --states=all -n "kiln-it-$1-${2:-1}" -o %i | head -1; }

# 1. resources, nix-build cores
if command -v nix-build >/dev/null; then
cat >"$T/probe.nix" <<'N'
{ want, nonce }:
builtins.derivation {
  name = "kiln-slurm-cores";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  inherit want nonce;
  args = [ "-c" "echo \"builder sees NIX_BUILD_CORES=$NIX_BUILD_CORES\"; test \"$NIX_BUILD_CORES\" = \"$want\" || exit 1; echo ok > $out" ];
}
N
nix=$("$KILN" submit --json --name nix-cores-3 --cores 3 --ram 700M --timeout 600 -- \
    "echo slurm-granted=\$SLURM_CPUS_PER_TASK; sleep 1; nix-build --option substituters '' --option sandbox false $T/probe.nix --argstr want \$SLURM_CPUS_PER_TASK --argstr nonce \$(date +%s%N) --no-out-link" | jid)
for _ in $(seq 100); do sid=$(slurm_id_of "$nix"); [ -n "$sid" ] && break; sleep 0.1; done
[ -n "$sid" ] || fail "no Slurm job for $nix"
sc=$(scontrol show job "$sid")
echo "$sc" | grep -q "JobName=kiln-it-$nix-1" || fail "job name: $sc"
echo "$sc" | grep -q "Comment=kiln job=$nix attempt=1 stage=build" || fail "comment: $sc"
echo "$sc" | grep -q "NumCPUs=3" || fail "cpus: $sc"
echo "$sc" | grep -qE "MinMemoryNode=700M|mem=700M" || fail "mem: $sc"
echo "$sc" | grep -q "TimeLimit=00:11:00" || fail "time limit (600 s -> 11 min): $sc"
wait_final "$nix"
[ "$(jget "$nix" 'd["state"]')" = succeeded ] || { "$KILN" logs "$nix"; fail "nix job: $(jget "$nix" 'd["reason"]')"; }
"$KILN" logs "$nix" | grep -q "^slurm-granted=3$" || fail "granted cores: $("$KILN" logs "$nix")"
"$KILN" logs "$nix" | grep -q "builder sees NIX_BUILD_CORES=3" || fail "nix log: $("$KILN" logs "$nix")"
[ "$(jget "$nix" 'd["exit_code"]')" = 0 ] || fail "exit code"
[ "$(jget "$nix" 'd["peak_ram_mb"] is not None')" = True ] || fail "no peak RAM"
echo "ok 1 sbatch: name, comment, 3 CPUs, 700M, 11 min; nix-build saw NIX_BUILD_CORES=3 = Slurm's grant; exit code and peak RAM came back"
else
echo "ok 1 # SKIP nix-build not installed"
fi

# 2. metacharacters
EVIL='$(touch '"$T"'/pwned1); `touch '"$T"'/pwned2`; "q" '"'"'s'"'"' \ & | > '"$T"'/pwned3 %j %x'
ev=$("$KILN" submit --json --name meta-env --env "EVIL=$EVIL" --ram 100M -- 'printf "%s\n" "$EVIL"' | jid)
for _ in $(seq 100); do sid=$(slurm_id_of "$ev"); [ -n "$sid" ] && break; sleep 0.1; done
cmdline=$(scontrol show job "$sid" | grep -E "Command=|Comment=")
case $cmdline in *pwned*|*EVIL*) fail "user strings reached Slurm: $cmdline";; esac
wait_final "$ev"
[ "$(jget "$ev" 'd["state"]')" = succeeded ] || fail "metachar job: $(jget "$ev" 'd["reason"]')"
got=$("$KILN" logs "$ev" | sed -n 2p)
[ "$got" = "$EVIL" ] || fail "env value changed on its way: '$got' != '$EVIL'"
ls "$T"/pwned* 2>/dev/null && fail "a metacharacter was interpreted"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
    --data-binary '{"name":"x;$(touch '"$T"'/pwned4)","command":"true"}' "$U/jobs")
[ "$code" = 400 ] || fail "a name with metacharacters: HTTP $code"
echo "ok 2 env with \$( ) \` ; \" ' \\ & | > %j reached the job literally, nothing interpreted, not in Slurm's command line; such a name is refused"

# 3. twice its RAM
oom=$("$KILN" submit --json --name eats-twice --ram 150M -- \
    ""$PY" -c 'import time; b = bytearray(300 * 1024 * 1024); b[::4096] = b\"x\" * len(b[::4096]); time.sleep(5)'" | jid)
wait_final "$oom"
show=$("$KILN" show "$oom")
[ "$(jget "$oom" 'd["state"]')" = failed ] || fail "oom job: $show"
echo "$show" | grep -q "killed by Slurm: it used more memory than its limit of 150 MiB" || fail "kiln show does not say so: $show"
echo "ok 3 300 MiB in a 150M stage: killed by Slurm's cgroup; kiln show: $(echo "$show" | grep '^reason' | sed 's/  */ /g')"

# 4. Slurm's reason: two 2000M stages fill each node's memory; kiln sees
# 2000M free in the partition, so it leases a third, which Slurm must hold.
b1=$("$KILN" submit --json --name mem-a --ram 2000M -- "sleep 8" | jid)
b2=$("$KILN" submit --json --name mem-b --ram 2000M -- "sleep 8" | jid)
for _ in $(seq 100); do [ "$(squeue -h -t R -n kiln-it-$b1-1,kiln-it-$b2-1 | wc -l)" = 2 ] && break; sleep 0.1; done
b3=$("$KILN" submit --json --name mem-c --ram 2000M -- "true" | jid)
why=""
for _ in $(seq 100); do
    why=$(jget "$b3" 'd["wait_reason"] or ""')
    case $why in *"waiting in Slurm (Resources)"*) break;; esac
    sleep 0.1
done
case $why in *"waiting in Slurm (Resources)"*) ;; *) fail "wait_reason of a pending Slurm stage: '$why'";; esac
"$KILN" show "$b3" | grep -q "waiting in Slurm (Resources)" || fail "kiln show lacks Slurm's reason"
echo "ok 4 a stage Slurm holds says: $why"
wait_final "$b3"

# 5. live log
lv=$("$KILN" submit --json --name live --ram 100M -- 'for i in 1 2 3 4 5 6 7 8; do echo line-$i; sleep 0.5; done' | jid)
seen1=0; seen2=0
for _ in $(seq 200); do
    n=$(curl -s -H "Authorization: Bearer $ADMIN" "$U/jobs/$lv/log" | grep -c '^line-')
    st=$(jget "$lv" 'd["state"]')
    [ "$st" = building ] && [ "$n" -ge 1 ] && [ "$seen1" = 0 ] && seen1=$n
    [ "$st" = building ] && [ "$seen1" != 0 ] && [ "$n" -gt "$seen1" ] && { seen2=$n; break; }
    sleep 0.1
done
[ "$seen2" -gt "$seen1" ] && [ "$seen1" -ge 1 ] || fail "log did not grow while running ($seen1, $seen2)"
wait_final "$lv"
echo "ok 5 live log of a running Slurm stage grew from $seen1 to $seen2 lines while it ran"

# 6. the partition as a kiln sim farm (same GRES / feature mapping)
"$PY" "$KILN_SRC/scripts/slurm-farm.py" --config "$T/serve.yaml" >"$T/farm.yaml" || fail "slurm-farm.py"
[ "$(grep -c '^  - ' "$T/farm.yaml")" = 2 ] || fail "farm: $(cat "$T/farm.yaml")"
grep "\"name\": \"$SLURM_N2\"" "$T/farm.yaml" | grep -q '"sm": "90"' || fail "GPU node in farm: $(cat "$T/farm.yaml")"
# The demo's test stage asks 16 GiB, more than these 3000 MiB nodes have:
# kiln sim plans the build, says the test can never run here, exits 1.
"$KILN" sim --farm "$T/farm.yaml" "$KILN_SRC/recipes/demo.yaml" --where sm=90,isa=avx2 >"$T/sim.txt" 2>&1
grep -q "^$SLURM_N1 .* 1$" "$T/sim.txt" && grep -q "^$SLURM_N2 " "$T/sim.txt" || fail "sim: $(cat "$T/sim.txt")"
grep -q "largest host has 4 cores and 2.9 GiB" "$T/sim.txt" || fail "sim: $(cat "$T/sim.txt")"
echo "ok 6 scripts/slurm-farm.py made a 2-host farm from sinfo ($SLURM_N2 with SM 90); kiln sim planned the demo build on it and said its 16 GiB test fits no node"
# 7. peak RAM from Slurm's accounting
pk=$("$KILN" submit --json --name holds-200m --ram 400M -- \
    ""$PY" -c 'import time; b = bytearray(200 * 1024 * 1024); b[::4096] = b\"x\" * len(b[::4096]); time.sleep(4)'" | jid)
wait_final "$pk"
[ "$(jget "$pk" 'd["state"]')" = succeeded ] || fail "200 MiB job: $(jget "$pk" 'd["reason"]')"
line=$("$KILN" logs "$pk" | grep "as Slurm measured it") || fail "no Slurm figure in the log: $("$KILN" logs "$pk" | tail -3)"
mb=$(jget "$pk" 'd["peak_ram_mb"]')
[ "$mb" -ge 200 ] && [ "$mb" -le 320 ] || fail "peak RAM $mb MiB for a 200 MiB stage ($line)"
"$KILN" show "$pk" | grep -qE "^peak_ram_mb +$mb$" || fail "kiln show: $("$KILN" show "$pk" | grep peak)"
echo "ok 7 a stage holding 200 MiB: peak_ram_mb $mb from Slurm (kiln show prints it); log: ${line#*] }"
echo PASS
