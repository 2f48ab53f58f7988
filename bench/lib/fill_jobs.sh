# bench/lib/fill_jobs.sh - sourced by the benches that need a large history:
# fill DB H Q puts H succeeded jobs and Q queued ones (a vLLM-like variant's
# name, command, env, attrs, commit) into a kiln database straight through
# SQLite. The database must have kiln's schema already (any kiln command
# that opens it, e.g. `kiln token create --data DIR`, creates it).
fill() { # DB H Q
    sqlite3 "$1" >/dev/null <<SQL
PRAGMA journal_mode=WAL;
PRAGMA synchronous=OFF;
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $2 + $3)
INSERT INTO jobs (name, recipe, branch, commit_id, state, stage, stages, attempt, command, env,
                  cores, ram_mb, isa, gpu_sm, attrs, worker_id, exit_code, created_at,
                  started_at, finished_at, stage_started_at, log_size, peak_ram_mb, cpu_s)
SELECT printf('vllm-python312-cuda12_9-sm%d-avx512-%d', 80 + x % 20, x), 'vllm', 'main',
       lower(hex(randomblob(20))),
       CASE WHEN x > $2 THEN 'queued' ELSE 'succeeded' END, 'build', '["build","test"]',
       CASE WHEN x > $2 THEN 0 ELSE 1 END,
       'flox build vllm --python 3.12 --cuda 12.9 --sm ' || (80 + x % 20),
       '{"NIX_BUILD_CORES":"16","CUDA_ARCH":"' || (80 + x % 20) || '"}',
       16, 98304, 'avx512', CAST(80 + x % 20 AS TEXT),
       '{"python":"3.12","cuda":"12.9","sm":"' || (80 + x % 20) || '","isa":"avx512"}',
       NULL, CASE WHEN x > $2 THEN NULL ELSE 0 END, 1764136800.0 + x,
       CASE WHEN x > $2 THEN NULL ELSE 1764136800.0 + x + 5 END,
       CASE WHEN x > $2 THEN NULL ELSE 1764136800.0 + x + 600 END,
       CASE WHEN x > $2 THEN NULL ELSE 1764136800.0 + x + 5 END,
       CASE WHEN x > $2 THEN 0 ELSE 4096 END,
       CASE WHEN x > $2 THEN NULL ELSE 30000 END, CASE WHEN x > $2 THEN NULL ELSE 3000.5 END
FROM c;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
}
