// mock-server.js - a small stand-in for `kiln serve` implementing the parts of
// docs/API.md the web page uses, with in-memory data. Used by the browser
// tests when no real server binary is available and for the 10,000-job test
// (seeding 10,000 jobs through the real API is slower than the test budget).
//
//   node mock-server.js --port 0 --web ../../web [--jobs N] [--workers N] [--slurm]
//
// --slurm serves GET /api/v1/slurm (the Slurm executor's pool, partition and
// two nodes, the second with a gpu:h100 GRES); POST /api/v1/slurm/_node/NAME
// {"state": "down"} changes a node's state (a mock-only hook for the tests).
//
// Prints "listening PORT" on stdout once bound to 127.0.0.1. Writes need a
// Bearer token starting with "kiln_"; GETs are anonymous.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { URL } from 'node:url';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => {
    if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1] && !all[i + 1].startsWith('--') ? all[i + 1] : '1']);
    return acc;
  }, []),
);
const PORT = Number(args.port || 0);
const WEB = path.resolve(args.web || path.join(path.dirname(new URL(import.meta.url).pathname), '../../web'));
const SEED_JOBS = Number(args.jobs || 0);
const SEED_WORKERS = Number(args.workers || 0);
const SLURM = args.slurm
  ? {
      pools: [{
        name: 'it', partition: 'kiln', worker: 'slurm-it', worker_id: 0, last_error: '', jobs: [],
        partitions: [{ name: 'kiln', avail: 'up', nodes: 2, nodes_up: 2, cpus: 8, cpus_alloc: 1, ram_mb: 6000 }],
        nodes: [
          { name: 'n1', state: 'idle', slurm_state: 'idle', cpus: 4, cpus_alloc: 0, ram_mb: 3000, gres: '', features: 'x86-64,x86-64-v2,x86-64-v3', partition: 'kiln', partition_avail: 'up' },
          { name: 'n2', state: 'mixed', slurm_state: 'mix', cpus: 4, cpus_alloc: 1, ram_mb: 3000, gres: 'gpu:h100:1', features: 'x86-64,x86-64-v2,x86-64-v3,sm_90', partition: 'kiln', partition_avail: 'up' },
        ],
      }],
    }
  : null;

const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
  "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

const now = () => Date.now() / 1000;

// ---- recipe expansion (the seed's 98 vLLM variants) ----
const X86 = ['avx', 'avx2', 'avx512', 'avx512bf16', 'avx512vnni'];
const SMS = {
  61: { cap: '6.1', gpus: 'P40, GTX 1080 Ti', arm: [] },
  70: { cap: '7.0', gpus: 'V100, Titan V', arm: [] },
  75: { cap: '7.5', gpus: 'T4, RTX 2080 Ti', arm: [] },
  80: { cap: '8.0', gpus: 'A100, A30', arm: ['armv8_2'] },
  86: { cap: '8.6', gpus: 'RTX 3090, A40', arm: [] },
  89: { cap: '8.9', gpus: 'RTX 4090, L4, L40', arm: [] },
  90: { cap: '9.0', gpus: 'H100, H200, L40S, GH200', arm: ['armv8_2', 'armv9'] },
  100: { cap: '10.0', gpus: 'B100, B200, GB200', arm: ['armv9'] },
  103: { cap: '10.3', gpus: 'B300, GB300', arm: ['armv9'] },
  120: { cap: '12.0', gpus: 'RTX 5090, RTX PRO 6000', arm: [] },
};
function expand(recipe, branch, where) {
  const out = [];
  if (recipe !== 'vllm' && recipe !== 'demo') return null;
  if (recipe === 'demo') {
    for (const sm of ['80', '90']) {
      const name = `demo-sm${sm}-avx2`;
      out.push({
        name, recipe, branch, platform: 'x86_64-linux',
        attrs: { sm, isa: 'avx2', cuda: '12.9', platform: 'x86_64-linux' },
        env: { NIX_BUILD_CORES: '2' }, resources: { cores: 2, ram_mb: 1024, est_duration_s: 30 },
        command: `echo build ${name}`, depends: [], selftest: { sm, isa: 'avx2', checks: [{ name: 'import' }] }, publish: { target: 'catalog' },
      });
    }
  } else {
    for (const cuda of ['12.9', '12.8']) {
      for (const sm of Object.keys(SMS)) {
        if (cuda === '12.8' && sm === '103') continue;
        const isas = (sm === '61' ? ['avx', 'avx2'] : X86).map((i) => [i, 'x86_64-linux'])
          .concat(SMS[sm].arm.map((i) => [i, 'aarch64-linux']));
        for (const [isa, platform] of isas) {
          const name = `vllm-python312-cuda${cuda.replace('.', '_')}-sm${sm}-${isa}`;
          out.push({
            name, recipe, branch, platform,
            attrs: { sm, capability: SMS[sm].cap, isa, cuda, python: '3.12', gpus: SMS[sm].gpus, platform },
            env: { NIX_BUILD_CORES: '16', MAX_JOBS: '16' },
            resources: { cores: 16, ram_mb: 98304, est_duration_s: 3600 },
            command: `flox build ${name}`, depends: [],
            selftest: { sm, isa, driver_min: cuda === '12.9' ? 560 : 550, checks: [{ name: 'import' }, { name: 'gemm' }] },
            publish: { target: 'catalog' },
          });
        }
      }
    }
  }
  return out.filter((v) => Object.entries(where || {}).every(([k, val]) =>
    String(k === 'platform' ? v.platform : v.attrs[k]) === String(val)));
}
function parseWhere(s) {
  const w = {};
  if (!s) return w;
  for (const part of s.split(',')) {
    const [k, v] = part.split('=');
    if (k && v !== undefined) w[k.trim()] = v.trim();
  }
  return w;
}

// ---- store ----
const jobs = new Map();
const auditLog = [];
const events = [];
let nextEventId = 1;
let nextJobId = 1;
const workers = new Map();
let nextWorkerId = 1;
const logs = new Map(); // id -> Buffer[] chunks joined lazily
const catalog = [];
const sseClients = new Set();
const logFollowers = new Map(); // job id -> Set(res)

function emit(type, data) {
  const ev = { id: nextEventId++, type, data: JSON.stringify(data) };
  events.push(ev);
  if (events.length > 60000) events.splice(0, events.length - 50000);
  for (const res of sseClients) writeEvent(res, ev);
}
function writeEvent(res, ev) {
  res.write(`id: ${ev.id}\nevent: ${ev.type}\ndata: ${ev.data}\n\n`);
}

const ACTIVE = new Set(['building', 'testing', 'publishing']);
const WAITING = new Set(['queued', 'built', 'tested']);
const FINAL = new Set(['succeeded', 'failed', 'cancelled', 'superseded']);

function newJob(v, priority, t) {
  const id = nextJobId++;
  const j = {
    id, name: v.name, recipe: v.recipe || null, branch: v.branch || null,
    commit: v.recipe ? '6232e786755296bd0c4f1d1e3b7a92f0aa11c3d4' : null,
    state: 'queued', stage: (v.stages || ['build'])[0], priority: priority || 0,
    attempt: 1, max_attempts: 3, command: v.command, env: v.env || {},
    resources: {
      cores: v.resources.cores, ram_mb: v.resources.ram_mb, platform: v.platform,
      isa: v.attrs.isa || null, gpu_sm: v.attrs.sm || null, driver_min: v.selftest ? v.selftest.driver_min : null,
    },
    attrs: v.attrs, stages: v.stages || (v.recipe ? ['build', 'test', 'publish'] : ['build']),
    depends: [], worker: null, wait_reason: null, reason: null, failed_stage: null, exit_code: null,
    timeout_s: v.timeout_s || 14400, created_at: t || now(), started_at: null, finished_at: null,
    log_size: 0, peak_ram_mb: null, cpu_s: null, selftest: null, artifact: null,
    est_duration_s: v.resources.est_duration_s || null, stage_times: {},
  };
  j.wait_reason = waitReason(j);
  jobs.set(id, j);
  return j;
}
function waitReason(j) {
  if (!WAITING.has(j.state)) return null;
  const online = [...workers.values()].filter((w) => w.state === 'online');
  if (!online.length) return 'no worker is online';
  const plat = online.filter((w) => w.platform === j.resources.platform);
  if (!plat.length) return `no online worker for platform ${j.resources.platform}`;
  if (j.stage === 'test' && j.resources.gpu_sm) {
    const gpu = plat.filter((w) => w.gpus.some((g) => g.sm === j.resources.gpu_sm));
    if (!gpu.length) return `no worker with an SM${j.resources.gpu_sm} GPU is online`;
  }
  return `waiting for ${j.resources.cores} free cores and ${Math.round(j.resources.ram_mb / 1024)} GiB RAM`;
}
// Catalog entries shaped like kiln serve's (docs/catalog.md).
function catalogEntry(j, t, signed) {
  const a = j.attrs || {};
  return {
    id: catalog.length + 1, name: j.name, version: '0.15.1', recipe: j.recipe, branch: j.branch, commit: j.commit,
    platform: j.resources.platform, sm: a.sm, capability: a.capability, isa: a.isa, cuda: a.cuda,
    driver_min: j.resources.driver_min, python: a.python, store_path: `/nix/store/${'x'.repeat(32)}-${j.name}`,
    size: j.artifact.size, digest: j.artifact.digest, log_digest: null, selftest: j.selftest, meta: {},
    signature: signed ? 'c2lnbmF0dXJl' : null, key: signed ? 'kiln-1' : null, created_at: t,
  };
}

function changed(j) {
  emit('job', j);
}
function appendLog(id, buf) {
  const j = jobs.get(id);
  let chunks = logs.get(id);
  if (!chunks) logs.set(id, (chunks = []));
  const offset = j.log_size;
  chunks.push(buf);
  j.log_size += buf.length;
  emit('log', { job: id, offset, len: buf.length });
  const f = logFollowers.get(id);
  if (f) for (const res of f) res.write(buf);
}
function logBytes(id) {
  return Buffer.concat(logs.get(id) || []);
}
function finishFollowers(id) {
  const f = logFollowers.get(id);
  if (f) for (const res of f) res.end();
  logFollowers.delete(id);
}
function setState(j, state, extra = {}) {
  Object.assign(j, extra);
  j.state = state;
  if (FINAL.has(state)) {
    j.finished_at = j.finished_at || now();
    j.worker = null;
    finishFollowers(j.id);
  }
  j.wait_reason = waitReason(j);
  changed(j);
}
function workerView(w) {
  const running = [...jobs.values()].filter((j) => j.worker === w.name && ACTIVE.has(j.state));
  return {
    id: w.id, name: w.name, state: w.state, cores: w.cores, ram_mb: w.ram_mb,
    cores_used: running.reduce((a, j) => a + j.resources.cores, 0),
    ram_used_mb: running.reduce((a, j) => a + j.resources.ram_mb, 0),
    gpus: w.gpus, isa_features: w.isa_features, platform: w.platform, labels: w.labels || {},
    last_seen: w.last_seen, jobs: running.map((j) => j.id), disk_free_mb: w.disk_free_mb ?? null,
    mem_pressure: !!w.mem_pressure,
  };
}

// ---- seeding (for the 10,000-job test and screenshots) ----
function seed() {
  const t0 = now();
  if (SEED_WORKERS) {
    const specs = [
      { name: 'build-1', cores: 64, ram_mb: 262144, platform: 'x86_64-linux', gpus: [] },
      { name: 'gpu-h100', cores: 32, ram_mb: 196608, platform: 'x86_64-linux',
        gpus: [{ index: 0, name: 'NVIDIA H100 80GB HBM3', sm: '90', memory_mb: 81559, driver: '580.65.06' }] },
      { name: 'grace-1', cores: 72, ram_mb: 491520, platform: 'aarch64-linux',
        gpus: [{ index: 0, name: 'NVIDIA GH200 480GB', sm: '90', memory_mb: 97871, driver: '580.65.06' }] },
    ].slice(0, SEED_WORKERS);
    for (const s of specs) {
      const w = { id: nextWorkerId++, state: 'online', isa_features: ['avx', 'avx2', 'avx512f'], last_seen: t0, ...s };
      workers.set(w.id, w);
    }
  }
  if (!SEED_JOBS) return;
  const vars = expand('vllm', 'main', {});
  const branches = ['main', 'main', 'main', 'release-0.14', 'dev'];
  for (let i = 0; i < SEED_JOBS; i++) {
    // The newest (still running or waiting) jobs are on "dev", so "main"
    // shows a finished matrix with greens and reds.
    const v = { ...vars[i % vars.length], branch: SEED_JOBS - i <= 400 ? 'dev' : branches[Math.floor(i / vars.length) % branches.length] };
    const span = 6 * 3600;
    const created = t0 - span + (i * span) / SEED_JOBS;
    const j = newJob(v, i % 7 === 0 ? 5 : 0, created);
    const left = SEED_JOBS - i;
    if (left > 400) {
      const r = i % 13;
      j.started_at = created + 60;
      j.finished_at = Math.min(t0 - 60, j.started_at + 900 + (i % 17) * 120);
      if (r === 3) setQuiet(j, 'failed', { failed_stage: 'build', reason: 'exit code 2', exit_code: 2 });
      else if (r === 7) setQuiet(j, 'failed', { failed_stage: 'test', reason: 'selftest gemm_fp16: kernel not found for sm_90', exit_code: 1, selftest: { passed: false, checks: [{ name: 'import', ok: true, duration_s: 3.1 }, { name: 'gemm_fp16', ok: false, duration_s: 0.4, message: 'no kernel image for sm_90' }] } });
      else if (r === 11) setQuiet(j, 'cancelled', {});
      else {
        setQuiet(j, 'succeeded', { exit_code: 0, selftest: { passed: true, checks: [{ name: 'import', ok: true, duration_s: 3.0 }, { name: 'gemm_fp16', ok: true, duration_s: 1.2 }] } });
        j.artifact = { digest: 'sha256:' + (j.id.toString(16).padStart(8, '0')).repeat(8), size: 2.1e9 + j.id * 1e6 };
        if (left < 1200) {
          catalog.push(catalogEntry(j, j.finished_at, j.id % 29 !== 0));
        }
      }
    } else if (left > 396) {
      j.state = 'building';
      j.worker = SEED_WORKERS > 1 && left > 398 ? 'gpu-h100' : 'build-1';
      j.started_at = Math.max(created + 30, t0 - 600 * (left - 396));
      j.wait_reason = null;
    }
  }
}
function setQuiet(j, state, extra) {
  Object.assign(j, extra);
  j.state = state;
  j.wait_reason = null;
}

// ---- HTTP ----
function send(res, status, obj, headers = {}) {
  const body = obj === undefined ? '' : JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', ...headers });
  res.end(body);
}
function fail(res, status, code, message, extra = {}) {
  send(res, status, { error: { code, message }, ...extra });
}
function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let n = 0;
    req.on('data', (c) => {
      n += c.length;
      if (n > 8 << 20) reject(new Error('too large'));
      else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
function authed(req) {
  const h = req.headers.authorization || '';
  return /^Bearer kiln_[A-Za-z0-9]+$/.test(h);
}
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon' };
function serveStatic(res, rel) {
  const file = path.normalize(path.join(WEB, rel));
  if (!file.startsWith(WEB + path.sep) && file !== WEB) return fail(res, 404, 'not_found', 'no such file');
  fs.readFile(file, (e, data) => {
    if (e) return fail(res, 404, 'not_found', 'no such file');
    res.writeHead(200, {
      'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream',
      'Content-Security-Policy': CSP, 'X-Content-Type-Options': 'nosniff', 'Cache-Control': 'no-cache',
    });
    res.end(data);
  });
}

// GET /queue: every waiting job (the filters of GET /jobs), priority first,
// then oldest; full job objects stand in for kiln's smaller ones.
function queueJobs(u) {
  const p = new URLSearchParams(u.searchParams);
  const limit = Math.min(Number(p.get('limit') || 100000), 100000);
  p.set('limit', '1000');
  const all = [];
  for (const st of WAITING) {
    if (u.searchParams.get('state') && u.searchParams.get('state') !== st) continue;
    let before = null;
    for (;;) {
      const q = new URLSearchParams(p);
      q.set('state', st);
      if (before) q.set('before_id', String(before));
      const r = listJobs({ searchParams: q });
      all.push(...r.jobs);
      before = r.next_before_id;
      if (!before) break;
    }
  }
  all.sort((a, b) => (b.priority || 0) - (a.priority || 0) || a.id - b.id);
  return { jobs: all.slice(0, limit), total: all.length, truncated: all.length > limit };
}

// Releases (docs/API.md "Releases"): the vllm jobs of main at the mock's
// commit make the open one, held while any of them failed; two older ones
// stand for a published and a superseded commit.
function releases() {
  const mine = [...jobs.values()].filter((j) => j.recipe === 'vllm' && j.branch === 'main' && j.commit);
  const failed = mine.filter((j) => j.state === 'failed' || j.state === 'cancelled');
  const passed = mine.filter((j) => j.state === 'succeeded').length;
  const t0 = Date.now() / 1000;
  const open = {
    id: 3, branch: 'main', commit: mine.length ? mine[0].commit : '6232e786755296bd0c4f1d1e3b7a92f0aa11c3d4', state: 'open',
    status: failed.length ? 'held' : passed === mine.length ? 'complete' : 'pending', created_at: t0 - 3600, completed_at: null,
    superseded_by: null, targets: null, variants_total: mine.length, variants_passed: passed,
    held_by: failed.slice(0, 3).map((j) => ({ job: j.id, name: j.name, state: j.state, failed_stage: j.failed_stage || null, reason: j.reason || null, recipe: j.recipe })),
  };
  return [open,
    { id: 2, branch: 'main', commit: '1f0c9e2b7d4a6c8e0b1d3f5a7c9e1b3d5f7a9c0e', state: 'complete', status: 'complete', created_at: t0 - 86400 * 2, completed_at: t0 - 86400 * 2 + 30000, superseded_by: null, targets: null, variants_total: 98, variants_passed: 98, held_by: [] },
    { id: 1, branch: 'main', commit: '9a8b7c6d5e4f30211f0e9d8c7b6a5f4e3d2c1b0a', state: 'superseded', status: 'superseded', created_at: t0 - 86400 * 3, completed_at: null, superseded_by: 2, targets: null, variants_total: 98, variants_passed: 61, held_by: [] }];
}

function listJobs(u) {
  const p = u.searchParams;
  const f = {
    recipe: p.get('recipe'), branch: p.get('branch'), name: p.get('name'), worker: p.get('worker'), q: (p.get('q') || '').toLowerCase(),
    sm: p.get('sm'), isa: p.get('isa'), cuda: p.get('cuda'), platform: p.get('platform'),
  };
  const states = (p.get('state') || '').split(',').filter(Boolean);
  const limit = Math.min(Number(p.get('limit') || 100), 1000);
  const before = p.get('before_id') ? Number(p.get('before_id')) : Infinity;
  const counts = {};
  const out = [];
  const all = [...jobs.values()];
  for (let i = all.length - 1; i >= 0; i--) {
    const j = all[i];
    if (f.recipe && j.recipe !== f.recipe) continue;
    if (f.branch && j.branch !== f.branch) continue;
    if (f.name && j.name !== f.name) continue;
    if (f.worker && j.worker !== f.worker) continue;
    if (f.sm && j.attrs.sm !== f.sm) continue;
    if (f.isa && j.attrs.isa !== f.isa) continue;
    if (f.cuda && j.attrs.cuda !== f.cuda) continue;
    if (f.platform && j.resources.platform !== f.platform) continue;
    if (f.q && !j.name.toLowerCase().includes(f.q) && !(j.reason || '').toLowerCase().includes(f.q)) continue;
    counts[j.state] = (counts[j.state] || 0) + 1;
    if (states.length && !states.includes(j.state)) continue;
    if (j.id >= before || out.length > limit) continue;
    out.push(j);
  }
  let next = null;
  if (out.length > limit) {
    out.length = limit;
    next = out[limit - 1].id;
  }
  return { jobs: out, next_before_id: next, counts };
}

async function handle(req, res) {
  const u = new URL(req.url, 'http://x');
  const p = u.pathname;
  const m = req.method;
  if (m === 'GET' && (p === '/' || p === '/index.html')) return serveStatic(res, 'index.html');
  if (m === 'GET' && p.startsWith('/web/')) return serveStatic(res, decodeURIComponent(p.slice(5)));
  if (p === '/healthz') return send(res, 200, { status: 'ok', version: 'mock' });
  // Test hook: re-emit N job events at once (an SSE burst).
  if (p === '/mock/burst' && m === 'POST') {
    const n = Number(u.searchParams.get('n') || 1000);
    const all = [...jobs.values()];
    for (let i = 0; i < n && all.length; i++) {
      const j = all[all.length - 1 - (i % all.length)];
      if (j.state === 'queued') j.priority = (j.priority || 0) + 0; // unchanged data, new event
      changed(j);
    }
    return send(res, 200, { emitted: n, last_event_id: nextEventId - 1 });
  }
  if (!p.startsWith('/api/v1/')) return fail(res, 404, 'not_found', `no route ${p}`);
  const parts = p.slice(8).split('/').filter(Boolean);
  // The audit log records every state-changing request, refused ones too.
  if (m !== 'GET') {
    const ok = authed(req);
    auditLog.push({ id: auditLog.length + 1, at: Date.now() / 1000, token_id: ok ? 1 : null, role: ok ? 'admin' : null, peer: '127.0.0.1', method: m, path: p, outcome: ok ? 'allowed' : '401' });
  }
  if (m !== 'GET' && !authed(req)) return fail(res, 401, 'unauthorized', 'this action needs a token');
  if (parts[0] === 'audit' && m === 'GET') {
    if (!authed(req)) return fail(res, 401, 'unauthorized', 'the audit log needs an admin token');
    const limit = Math.min(Number(u.searchParams.get('limit') || 100), 1000);
    const before = Number(u.searchParams.get('before_id') || Infinity);
    const rows = auditLog.filter((a) => a.id < before).reverse();
    return send(res, 200, { audit: rows.slice(0, limit), next_before_id: rows.length > limit ? rows[limit - 1].id : null });
  }
  if (parts[0] === 'releases' && parts.length === 1 && m === 'GET') return send(res, 200, { releases: releases() });

  // events
  if (parts[0] === 'events' && m === 'GET') {
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive' });
    res.write(': hello\n\n');
    const last = Number(req.headers['last-event-id'] || u.searchParams.get('last_event_id') || 0);
    if (last) for (const ev of events) if (ev.id > last) writeEvent(res, ev);
    sseClients.add(res);
    const ka = setInterval(() => res.write(': keep-alive\n\n'), 15000);
    req.on('close', () => { clearInterval(ka); sseClients.delete(res); });
    return;
  }
  if (parts[0] === 'queue' && parts.length === 1 && m === 'GET') return send(res, 200, queueJobs(u));
  if (parts[0] === 'jobs') {
    if (parts.length === 1 && m === 'GET') return send(res, 200, listJobs(u));
    if (parts.length === 1 && m === 'POST') {
      let b;
      try { b = JSON.parse((await readBody(req)).toString('utf8')); } catch { return fail(res, 400, 'parse_error', 'body is not valid JSON'); }
      if (b.recipe) {
        const vars = expand(b.recipe, b.branch || 'main', b.where || {});
        if (!vars) return fail(res, 404, 'not_found', `recipe ${b.recipe} not found`);
        if (!vars.length) return fail(res, 400, 'invalid', 'the filters select no variant');
        const created = vars.map((v) => newJob(v, b.priority));
        created.forEach(changed);
        return send(res, 201, { jobs: created });
      }
      if (!b.name || !b.command) return fail(res, 400, 'invalid', 'an ad-hoc job needs name and command');
      const j = newJob({
        name: String(b.name), command: String(b.command), platform: b.platform || 'x86_64-linux',
        attrs: b.attrs || {}, env: b.env || {}, timeout_s: b.timeout_s,
        resources: { cores: b.cores || 1, ram_mb: b.ram_mb || 1024 }, stages: ['build'],
      }, b.priority);
      changed(j);
      return send(res, 201, { jobs: [j] });
    }
    const id = Number(parts[1]);
    const j = jobs.get(id);
    if (!j) return fail(res, 404, 'not_found', `job ${parts[1]} not found`);
    if (parts.length === 2 && m === 'GET') return send(res, 200, j);
    if (parts[2] === 'cancel' && m === 'POST') {
      if (FINAL.has(j.state)) return fail(res, 409, 'bad_state', `job ${id} is already ${j.state}`);
      setState(j, 'cancelled', { reason: 'cancelled by user' });
      return send(res, 200, j);
    }
    if (parts[2] === 'retry' && m === 'POST') {
      if (!FINAL.has(j.state) || j.state === 'succeeded') return fail(res, 409, 'bad_state', `job ${id} is ${j.state}`);
      setState(j, 'queued', { attempt: j.attempt + 1, stage: j.stages[0], reason: null, failed_stage: null, exit_code: null, started_at: null, finished_at: null, stage_times: {} });
      return send(res, 200, j);
    }
    if (parts[2] === 'log' && m === 'GET') {
      const off = Number(u.searchParams.get('offset') || 0);
      const data = logBytes(id).subarray(off);
      if (u.searchParams.get('follow') === '1' && !FINAL.has(j.state)) {
        res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' });
        res.write(data);
        let set = logFollowers.get(id);
        if (!set) logFollowers.set(id, (set = new Set()));
        set.add(res);
        req.on('close', () => set.delete(res));
        return;
      }
      res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store', 'X-Log-Size': String(j.log_size) });
      return res.end(data);
    }
    if (parts[2] === 'log' && m === 'POST') {
      const body = await readBody(req);
      const off = Number(u.searchParams.get('offset') || 0);
      if (off > j.log_size) return fail(res, 409, 'conflict', 'offset beyond end', { size: j.log_size });
      const skip = j.log_size - off;
      if (body.length > skip) appendLog(id, body.subarray(skip));
      return send(res, 200, { size: j.log_size });
    }
    if (parts[2] === 'report' && m === 'POST') {
      let b;
      try { b = JSON.parse((await readBody(req)).toString('utf8')); } catch { return fail(res, 400, 'parse_error', 'body is not valid JSON'); }
      if (b.attempt !== j.attempt || !ACTIVE.has(j.state)) return fail(res, 409, 'conflict', 'stale report');
      const st = j.stage_times[j.stage] || (j.stage_times[j.stage] = {});
      st.finished_at = now();
      if (b.peak_ram_mb != null) j.peak_ram_mb = b.peak_ram_mb;
      if (b.cpu_s != null) j.cpu_s = b.cpu_s;
      if (b.selftest) j.selftest = b.selftest;
      if (b.exit_code !== 0 || b.reason) {
        setState(j, 'failed', { failed_stage: j.stage, reason: b.reason || `exit code ${b.exit_code}`, exit_code: b.exit_code });
        return send(res, 200, { state: j.state });
      }
      const idx = j.stages.indexOf(j.stage);
      if (idx + 1 >= j.stages.length) {
        if (j.stage === 'publish') {
          const art = { digest: 'sha256:' + (id.toString(16).padStart(8, '0')).repeat(8), size: 1234567 + id };
          j.artifact = art;
          const entry = catalogEntry(j, now(), true);
          catalog.push(entry);
          emit('catalog', entry);
        }
        setState(j, 'succeeded', { exit_code: 0 });
      } else {
        const next = j.stages[idx + 1];
        setState(j, j.stage === 'build' ? 'built' : 'tested', { stage: next, worker: null });
      }
      return send(res, 200, { state: j.state });
    }
    return fail(res, 405, 'method_not_allowed', `${m} not allowed here`);
  }
  if (parts[0] === 'slurm') {
    if (!SLURM) return fail(res, 404, 'not_found', `no route ${p}`);
    if (parts.length === 1 && m === 'GET') return send(res, 200, SLURM);
    if (parts[1] === '_node' && parts[2] && m === 'POST') {
      const b = JSON.parse((await readBody(req)).toString('utf8') || '{}');
      const pool = SLURM.pools[0];
      const n = pool.nodes.find((x) => x.name === parts[2]);
      if (!n) return fail(res, 404, 'not_found', `no node ${parts[2]}`);
      n.state = n.slurm_state = String(b.state || 'down');
      pool.partitions[0].nodes_up = pool.nodes.filter((x) => ['idle', 'mixed', 'alloc'].includes(x.state)).length;
      return send(res, 200, n);
    }
    return fail(res, 405, 'method_not_allowed', `${m} not allowed here`);
  }
  if (parts[0] === 'workers') {
    if (parts.length === 1 && m === 'GET') return send(res, 200, { workers: [...workers.values()].map(workerView) });
    if (parts[1] === 'register' && m === 'POST') {
      let b;
      try { b = JSON.parse((await readBody(req)).toString('utf8')); } catch { return fail(res, 400, 'parse_error', 'body is not valid JSON'); }
      let w = [...workers.values()].find((x) => x.name === b.name);
      if (!w) { w = { id: nextWorkerId++ }; workers.set(w.id, w); }
      Object.assign(w, { name: b.name, cores: b.cores, ram_mb: b.ram_mb, platform: b.platform || 'x86_64-linux', isa_features: b.isa_features || [], gpus: b.gpus || [], labels: b.labels || {}, state: 'online', last_seen: now() });
      emit('worker', workerView(w));
      for (const j of jobs.values()) if (WAITING.has(j.state)) j.wait_reason = waitReason(j);
      return send(res, 200, { worker_id: w.id, heartbeat_s: 5, lost_after_s: 20, cancel: [] });
    }
    const w = workers.get(Number(parts[1]));
    if (!w) return fail(res, 404, 'not_found', `worker ${parts[1]} not found`);
    let b = {};
    try { b = JSON.parse((await readBody(req)).toString('utf8') || '{}'); } catch { return fail(res, 400, 'parse_error', 'body is not valid JSON'); }
    w.last_seen = now();
    if (parts[2] === 'lease' && m === 'POST') {
      if (w.state === 'draining') return send(res, 204);
      // Never overcommit: the job must fit what this worker has free.
      const view = workerView(w);
      const freeCores = w.cores - view.cores_used;
      const freeRam = w.ram_mb - view.ram_used_mb;
      const cand = [...jobs.values()]
        .filter((j) => WAITING.has(j.state) && j.resources.platform === w.platform
          && j.resources.cores <= freeCores && j.resources.ram_mb <= freeRam)
        .sort((a, c) => c.priority - a.priority || a.id - c.id)[0];
      if (!cand) return send(res, 204);
      const st = { queued: 'building', built: 'testing', tested: 'publishing' }[cand.state];
      cand.stage_times[cand.stage] = { started_at: now(), worker: w.name };
      setState(cand, st, { worker: w.name, started_at: cand.started_at || now() });
      emit('worker', workerView(w));
      return send(res, 200, { job: { id: cand.id, attempt: cand.attempt, stage: cand.stage, name: cand.name, command: cand.command, env: cand.env, cores: cand.resources.cores, ram_mb: cand.resources.ram_mb, timeout_s: cand.timeout_s, gpu_index: null, selftest: null, attrs: cand.attrs } });
    }
    if (parts[2] === 'heartbeat' && m === 'POST') {
      const cancel = (b.running || []).filter((r) => { const j = jobs.get(r.job); return !j || !ACTIVE.has(j.state) || j.attempt !== r.attempt; }).map((r) => r.job);
      return send(res, 200, { cancel, drain: w.state === 'draining' });
    }
    if (parts[2] === 'drain' && m === 'POST') {
      w.state = b.drain === false ? 'online' : 'draining';
      emit('worker', workerView(w));
      return send(res, 200, workerView(w));
    }
    return fail(res, 405, 'method_not_allowed', `${m} not allowed here`);
  }
  if (parts[0] === 'recipes') {
    if (parts.length === 1 && m === 'GET') return send(res, 200, { recipes: ['demo', 'vllm'] });
    if (parts[2] === 'expand' && m === 'GET') {
      const vars = expand(parts[1], u.searchParams.get('branch') || 'main', parseWhere(u.searchParams.get('where')));
      if (!vars) return fail(res, 404, 'not_found', `recipe ${parts[1]} not found`);
      return send(res, 200, { variants: vars });
    }
  }
  if (parts[0] === 'catalog' && m === 'GET') {
    if (parts.length === 1) {
      const q = u.searchParams;
      const out = catalog.filter((c) => (!q.get('name') || c.name.includes(q.get('name')))
        && ['sm', 'isa', 'cuda', 'platform'].every((k) => !q.get(k) || c[k] === q.get(k))
        && (!q.get('branch') || c.branch === q.get('branch')));
      return send(res, 200, { entries: out.slice().reverse() });
    }
    const c = catalog[Number(parts[1]) - 1];
    if (!c) return fail(res, 404, 'not_found', `artifact ${parts[1]} not found`);
    if (parts[2] === 'download') {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Disposition': `attachment; filename="${c.name}.tar"` });
      return res.end('artifact ' + c.name + '\n');
    }
    return send(res, 200, { ...c, signature_ok: !!c.signature });
  }
  return fail(res, 404, 'not_found', `no route ${p}`);
}

seed();
const server = http.createServer((req, res) => {
  handle(req, res).catch((e) => { try { fail(res, 500, 'internal', String(e.message)); } catch { /* gone */ } });
});
server.listen(PORT, '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
