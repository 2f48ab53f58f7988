// lib.mjs - helpers for the browser tests: start a server (real `kiln serve`
// or the mock), launch Debian's chromium through playwright-core, and a fake
// worker that moves jobs through their states over the documented worker
// protocol (docs/API.md), which is the most deterministic way to drive the page.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const SRC = process.env.KILN_SRC || path.resolve(HERE, '../..');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export async function waitFor(fn, ms, what) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await sleep(25);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

const children = new Set();
export function killAll() {
  for (const c of children) {
    try {
      process.kill(c.pid, 'SIGTERM');
    } catch {
      /* already gone */
    }
  }
  children.clear();
}
process.on('exit', killAll);

function track(child, stop) {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return async () => {
    if (stop) await stop();
    if (child.exitCode === null) {
      try {
        process.kill(child.pid, 'SIGTERM');
      } catch {
        /* gone */
      }
      await Promise.race([new Promise((r) => child.once('exit', r)), sleep(3000)]);
      if (child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    children.delete(child);
  };
}

// ---- servers ----

// Mock server: writes need any "kiln_..." token.
export async function startMock(opts = {}) {
  const port = await freePort();
  const args = [path.join(HERE, 'mock-server.js'), '--port', String(port), '--web', path.join(SRC, 'web')];
  if (opts.jobs) args.push('--jobs', String(opts.jobs));
  if (opts.workers) args.push('--workers', String(opts.workers));
  if (opts.slurm) args.push('--slurm');
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const stop = track(child);
  await new Promise((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      if (buf.includes('listening')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`mock server exited with ${code}`)));
  });
  const token = 'kiln_' + 'ab'.repeat(24);
  return { kind: 'mock', base: `http://127.0.0.1:${port}`, admin: token, worker: token, submit: token, stop };
}

// Real `kiln serve`. Returns null when the binary cannot serve yet.
export async function startKiln(opts = {}) {
  const bin = process.env.KILN_BIN || path.join(SRC, 'build/kiln');
  if (!fs.existsSync(bin)) return null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-web-'));
  const mk = (role) => {
    const r = spawnSync(bin, ['token', 'create', '--data', dir, '--role', role, '--name', `web-${role}`], { encoding: 'utf8', timeout: 10000 });
    const m = /(kiln_[0-9a-f]{48})/.exec(`${r.stdout}${r.stderr}`);
    return m ? m[1] : null;
  };
  const admin = mk('admin');
  if (!admin) {
    fs.rmSync(dir, { recursive: true, force: true });
    return null;
  }
  const worker = mk('worker') || admin;
  const submit = mk('submit') || admin;
  const port = await freePort();
  const args = ['serve', '--data', dir, '--listen', `127.0.0.1:${port}`, '--web', path.join(SRC, 'web'), '--allow-anonymous-read'];
  if (fs.existsSync(path.join(SRC, 'recipes'))) args.push('--recipes', path.join(SRC, 'recipes'));
  const log = fs.openSync(path.join(dir, 'serve.log'), 'w');
  const child = spawn(bin, args, { stdio: ['ignore', log, log] });
  const stop = track(child, null);
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitFor(async () => (await fetch(`${base}/healthz`)).ok, 8000, 'kiln serve /healthz');
  } catch (e) {
    await stop();
    const out = fs.readFileSync(path.join(dir, 'serve.log'), 'utf8');
    throw new Error(`kiln serve did not start: ${e.message}\n${out.slice(-2000)}`);
  }
  return {
    kind: 'kiln', base, admin, worker, submit, dir,
    stop: async () => {
      await stop();
      if (!process.env.KEEP_TMP) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

// A real `kiln worker` against a real server; null if this build has none.
export async function startRealWorker(srv, name = 'e2e-worker') {
  const bin = process.env.KILN_BIN || path.join(SRC, 'build/kiln');
  if (srv.kind !== 'kiln' || !fs.existsSync(bin)) return null;
  const probe = spawnSync(bin, ['worker', '--help'], { encoding: 'utf8', timeout: 5000 });
  if (probe.status !== 0 || !/--server/.test(`${probe.stdout}${probe.stderr}`)) return null;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-web-worker-'));
  const log = fs.openSync(path.join(work, 'worker.log'), 'w');
  const child = spawn(bin, ['worker', '--server', srv.base, '--token', srv.worker, '--name', name, '--cores', '2', '--ram', '2G', '--work-dir', work],
    { stdio: ['ignore', log, log] });
  const stop = track(child);
  return {
    log: () => fs.readFileSync(path.join(work, 'worker.log'), 'utf8'),
    stop: async () => {
      await stop();
      fs.rmSync(work, { recursive: true, force: true });
    },
  };
}

// The backend for a test: the real server unless KILN_WEB_MOCK=1 or it
// cannot run; `needMock` forces the mock (seeded stores, SSE bursts).
export async function startServer(opts = {}) {
  if (!opts.needMock && process.env.KILN_WEB_MOCK !== '1') {
    const s = await startKiln(opts);
    if (s) return s;
  }
  return startMock(opts);
}

// ---- API ----
export async function api(srv, method, p, body, token) {
  const hd = { Accept: 'application/json' };
  const t = token === undefined ? srv.admin : token;
  if (t) hd.Authorization = `Bearer ${t}`;
  let payload;
  if (body instanceof Uint8Array || typeof body === 'string') payload = body;
  else if (body !== undefined) {
    payload = JSON.stringify(body);
    hd['Content-Type'] = 'application/json';
  }
  const res = await fetch(`${srv.base}/api/v1${p}`, { method, headers: hd, body: payload });
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = { raw: text };
  }
  if (!res.ok && res.status !== 204) {
    const e = new Error(`${method} ${p}: ${res.status} ${text.slice(0, 300)}`);
    e.status = res.status;
    e.body = json;
    throw e;
  }
  return json;
}

export async function submitAdhoc(srv, name, extra = {}) {
  const r = await api(srv, 'POST', '/jobs', { name, command: 'true', cores: 1, ram_mb: 256, platform: 'x86_64-linux', priority: 0, timeout_s: 600, ...extra }, srv.submit);
  return r.jobs[0];
}

// A worker speaking the agent protocol; lease() returns the leased job or null.
export class FakeWorker {
  constructor(srv, opts = {}) {
    this.srv = srv;
    this.name = opts.name || 'test-worker';
    this.spec = {
      name: this.name, cores: 64, ram_mb: 262144, platform: opts.platform || 'x86_64-linux',
      isa_features: ['sse4_2', 'avx', 'avx2', 'fma', 'f16c', 'avx512f', 'avx512dq', 'avx512vl', 'avx512bw', 'avx512_vnni', 'avx512_bf16'],
      gpus: opts.gpus || [{ index: 0, name: 'NVIDIA H100 80GB HBM3', sm: '90', memory_mb: 81559, driver: '580.65.06' }],
      labels: {}, running: [],
    };
    this.offsets = new Map();
  }

  async register() {
    const r = await api(this.srv, 'POST', '/workers/register', this.spec, this.cred || this.srv.worker);
    this.id = r.worker_id;
    // The registration token only registers; the worker acts with the
    // credential the answer carries (rotated on each registration).
    this.cred = r.credential;
    return r;
  }

  async lease(wait = 0) {
    const r = await api(this.srv, 'POST', `/workers/${this.id}/lease?wait=${wait}`, { free_cores: 64, free_ram_mb: 262144, free_gpus: [0] }, this.cred);
    return r && r.job ? r.job : null;
  }

  async heartbeat(running) {
    return api(this.srv, 'POST', `/workers/${this.id}/heartbeat`, { running, disk_free_mb: 500000, mem_pressure: false }, this.cred);
  }

  async log(job, text) {
    const off = this.offsets.get(job.id) || 0;
    const bytes = new TextEncoder().encode(text);
    const r = await api(this.srv, 'POST', `/jobs/${job.id}/log?attempt=${job.attempt}&offset=${off}`, bytes, this.cred);
    this.offsets.set(job.id, r && r.size !== undefined ? r.size : off + bytes.length);
    return r;
  }

  async report(job, exitCode = 0, extra = {}) {
    return api(this.srv, 'POST', `/jobs/${job.id}/report`, {
      attempt: job.attempt, stage: job.stage, exit_code: exitCode, signal: 0, reason: null, infra: false,
      peak_ram_mb: 1200, cpu_s: 12.5, selftest: null, outputs: [], ...extra,
    }, this.cred);
  }

  // Lease until the given job id comes out (others are left running).
  async leaseJob(id, ms = 5000) {
    return waitFor(async () => {
      const j = await this.lease(0);
      return j && j.id === id ? j : null;
    }, ms, `a lease for job ${id}`);
  }
}

// ---- browser ----
export async function launch() {
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-chromium-'));
  const ctx = await chromium.launchPersistentContext(userDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
    viewport: { width: 1280, height: 860 },
    colorScheme: 'light',
  });
  const close = async () => {
    await ctx.close().catch(() => {});
    fs.rmSync(userDir, { recursive: true, force: true });
  };
  return { ctx, close };
}

// A page that fails the test on any dialog, page error or CSP violation.
export async function openPage(browser, srv, hash, opts = {}) {
  const page = await browser.ctx.newPage();
  if (opts.viewport) await page.setViewportSize(opts.viewport);
  page.problems = [];
  page.on('dialog', async (d) => {
    page.problems.push(`dialog opened: ${d.type()} ${d.message()}`);
    await d.dismiss().catch(() => {});
  });
  page.on('pageerror', (e) => page.problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    const t = m.text();
    if (/Content.Security.Policy|Refused to/i.test(t)) page.problems.push(`CSP: ${t}`);
    else if (m.type() === 'error' && !/Failed to load resource|net::ERR/.test(t)) page.problems.push(`console error: ${t}`);
  });
  if (opts.token !== undefined) await page.addInitScript((t) => localStorage.setItem('kiln.token', t), opts.token);
  await page.goto(`${srv.base}/${hash || ''}`);
  await page.waitForFunction(() => window.kiln && window.kiln.live && window.kiln.live.status === 'live', null, { timeout: 5000 });
  return page;
}

export function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}
