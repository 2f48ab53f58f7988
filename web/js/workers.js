// workers.js - the Workers view: every host with cores and RAM in use, its
// GPUs (with SM), current jobs, last heartbeat, and a drain button. Below
// them, when the server runs the Slurm executor (GET /slurm answers), each
// pool's partitions and nodes as rows of their own: state, CPUs, memory,
// GRES, features. The pool itself stays a worker card above.
import { h, clear, badge, fmtMB, fmtAgo } from './dom.js';
import * as api from './api.js';

function meter(label, used, total, fmt) {
  const pct = total > 0 ? Math.min(100, (used / total) * 100) : 0;
  const fill = h('span', { class: 'bar' });
  fill.style.width = `${pct}%`;
  return h('div', { class: 'meter' },
    h('div', { class: 'meter-label' }, h('span', {}, label), h('span', {}, `${fmt(used)} / ${fmt(total)}`)),
    h('div', { class: `progress ${pct > 90 ? 'hot' : ''}`, role: 'img', 'aria-label': `${label}: ${Math.round(pct)}% in use` }, fill));
}

const W_STATE = { online: 'succeeded', draining: 'tested', lost: 'failed', offline: 'cancelled' };
// Slurm node states (the server's one-word form) as badge colours.
const N_STATE = { idle: 'succeeded', mixed: 'building', alloc: 'building', drain: 'tested', down: 'failed', other: 'cancelled' };

function stateBadgeOf(map, word) {
  const b = badge(map[word] || 'cancelled');
  b.lastChild.textContent = word;
  return b;
}

// One pool's partitions and nodes as two tables.
function slurmPool(p) {
  const parts = Array.isArray(p.partitions) ? p.partitions : [];
  const nodes = Array.isArray(p.nodes) ? p.nodes : [];
  const th = (...c) => h('thead', {}, h('tr', {}, c.map((x) => h('th', { scope: 'col' }, x))));
  return h('section', { class: 'slurm-pool card', dataset: { pool: String(p.name) } },
    h('h2', {}, `Slurm pool ${p.name}`, h('span', { class: 'muted' }, ` · worker ${p.worker || ''}`)),
    p.last_error ? h('p', { class: 'error' }, String(p.last_error)) : null,
    h('div', { class: 'table-wrap' }, h('table', { class: 'grid-table compact slurm-partitions' }, th('Partition', 'State', 'Nodes up', 'CPUs in use', 'Memory'),
      h('tbody', {}, parts.map((x) => h('tr', { class: 'slurm-partition', dataset: { partition: String(x.name) } },
        h('th', { scope: 'row' }, String(x.name)), h('td', {}, String(x.avail || '')),
        h('td', {}, `${x.nodes_up ?? 0} of ${x.nodes ?? 0}`), h('td', {}, `${x.cpus_alloc ?? 0} / ${x.cpus ?? 0}`),
        h('td', {}, fmtMB(x.ram_mb || 0))))))),
    h('div', { class: 'table-wrap' }, h('table', { class: 'grid-table compact slurm-nodes' }, th('Node', 'State', 'Partition', 'CPUs in use', 'Memory', 'GRES', 'Features'),
      h('tbody', {}, nodes.map((n) => h('tr', { class: `slurm-node n-${n.state}`, dataset: { node: String(n.name), state: String(n.state) } },
        h('th', { scope: 'row' }, String(n.name)),
        h('td', { title: `Slurm says ${n.slurm_state || n.state}` }, stateBadgeOf(N_STATE, String(n.state || 'other'))),
        h('td', {}, String(n.partition || '')), h('td', {}, `${n.cpus_alloc ?? 0} / ${n.cpus ?? 0}`),
        h('td', {}, fmtMB(n.ram_mb || 0)), h('td', { class: 'gres' }, n.gres ? String(n.gres) : '—'),
        h('td', { class: 'features' }, String(n.features || '').split(',').filter(Boolean).join(' '))))))));
}

export function mount(root, ctx) {
  const byKey = new Map();
  let slurmT = null;
  const list = h('div', { class: 'workers', id: 'workers' });
  const summary = h('p', { class: 'lead' });
  const errBox = h('p', { class: 'error', role: 'alert', hidden: true });
  const slurmBox = h('div', { class: 'slurm', id: 'slurm' });
  root.append(h('div', { class: 'view-head' }, h('h1', {}, 'Workers'), summary), errBox, list, slurmBox);

  // No Slurm executor: the route is absent (404) and the section stays empty.
  async function loadSlurm() {
    try {
      const r = await api.get('/slurm');
      clear(slurmBox);
      for (const p of api.listOf(r, 'pools')) slurmBox.append(slurmPool(p));
    } catch {
      clear(slurmBox);
    }
  }

  function card(w) {
    const now = Date.now() / 1000;
    const draining = w.state === 'draining';
    const btn = h('button', { type: 'button', class: 'btn', dataset: { worker: String(w.id) } }, draining ? `Resume ${w.name}` : `Drain ${w.name}`);
    btn.addEventListener('click', async () => {
      btn.disabled = true;
      try {
        const r = await api.post(`/workers/${encodeURIComponent(w.id)}/drain`, { drain: !draining });
        ctx.toast(draining ? `${w.name} takes work again.` : `${w.name} is draining: it finishes what it runs and takes nothing new.`);
        if (r && r.name) put(r);
        else load();
      } catch (e) {
        ctx.toast(`Drain failed: ${e.message}`, 'error');
        btn.disabled = false;
      }
    });
    const gpus = Array.isArray(w.gpus) ? w.gpus : [];
    const jobs = Array.isArray(w.jobs) ? w.jobs : [];
    const stateWord = w.state || 'unknown';
    const stateBadge = badge(W_STATE[stateWord] || 'cancelled');
    stateBadge.lastChild.textContent = stateWord;
    const flags = [];
    if (w.mem_pressure) flags.push(h('span', { class: 'badge st-bad' }, '⚠ memory pressure'));
    if (w.disk_free_mb != null && w.disk_free_mb < 10240) flags.push(h('span', { class: 'badge st-bad' }, `⚠ disk ${fmtMB(w.disk_free_mb)} free`));
    return h('article', { class: `card worker w-${stateWord}`, dataset: { name: String(w.name) } },
      h('header', { class: 'worker-head' },
        h('h2', {}, String(w.name)), stateBadge, flags,
        h('span', { class: 'muted hb' }, `heartbeat ${fmtAgo(w.last_seen, now)}`)),
      h('p', { class: 'muted' }, [w.platform, Array.isArray(w.isa_features) ? w.isa_features.slice(0, 8).join(' ') : ''].filter(Boolean).join(' · ')),
      meter('Cores', w.cores_used || 0, w.cores || 0, (x) => String(x)),
      meter('RAM', w.ram_used_mb || 0, w.ram_mb || 0, fmtMB),
      h('div', { class: 'gpus' }, gpus.length ? gpus.map((g) => h('span', { class: 'tag gpu' }, `GPU${g.index ?? ''} ${g.name || ''} · SM${g.sm || '?'}${g.memory_mb ? ' · ' + fmtMB(g.memory_mb) : ''}`)) : h('span', { class: 'muted' }, 'no GPU')),
      h('div', { class: 'worker-jobs' }, h('span', { class: 'muted' }, jobs.length ? 'Running: ' : 'Idle'),
        jobs.slice(0, 12).map((id) => {
          const j = ctx.live.jobs.get(id);
          return h('a', { class: 'tag', href: ctx.hashFor('build', id) }, j ? `#${id} ${j.name}` : `#${id}`);
        }),
        jobs.length > 12 ? h('a', { class: 'tag', href: ctx.hashFor('queue', null, { state: 'building' }) }, `and ${jobs.length - 12} more`) : null),
      h('div', { class: 'actions' }, btn));
  }

  // Job names for the "Running" line: one request per worker whose jobs
  // the page has not seen yet (GET /jobs?worker=NAME).
  const asked = new Set();
  async function fillNames(w) {
    const ids = Array.isArray(w.jobs) ? w.jobs : [];
    if (!ids.some((id) => !ctx.live.jobs.has(id)) || asked.has(`${w.name}|${ids.join(',')}`)) return;
    asked.add(`${w.name}|${ids.join(',')}`);
    try {
      const r = await api.get('/jobs', { worker: w.name, limit: 100 });
      let got = false;
      for (const j of api.listOf(r, 'jobs')) {
        if (ids.includes(j.id) && !ctx.live.jobs.has(j.id)) {
          ctx.live.jobs.set(j.id, j);
          got = true;
        }
      }
      const cur = byKey.get(w.id ?? w.name);
      if (got && cur) put(cur.w);
    } catch {
      /* ids alone will do */
    }
  }

  function put(w) {
    const k = w.id ?? w.name;
    const el = card(w);
    const old = byKey.get(k);
    byKey.set(k, { w, el });
    const focused = old && old.el.contains(document.activeElement);
    if (old) old.el.replaceWith(el);
    else list.append(el);
    if (focused) el.querySelector('button').focus();
    renderSummary();
    fillNames(w);
    // A pool re-registers when its nodes change: show the nodes again.
    if (w.labels && w.labels.executor === 'slurm') {
      clearTimeout(slurmT);
      slurmT = setTimeout(loadSlurm, 300);
    }
  }

  function renderSummary() {
    const ws = [...byKey.values()].map((x) => x.w);
    const on = ws.filter((w) => w.state === 'online').length;
    const cores = ws.reduce((a, w) => a + (w.cores || 0), 0);
    const used = ws.reduce((a, w) => a + (w.cores_used || 0), 0);
    const gpus = ws.reduce((a, w) => a + (Array.isArray(w.gpus) ? w.gpus.length : 0), 0);
    summary.textContent = ws.length ? `${on} of ${ws.length} online · ${used} of ${cores} cores in use · ${gpus} GPUs` : 'No worker has registered yet.';
  }

  async function load() {
    try {
      const r = await api.get('/workers');
      clear(list);
      byKey.clear();
      for (const w of api.listOf(r, 'workers')) put(w);
      renderSummary();
      errBox.hidden = true;
      loadSlurm();
    } catch (e) {
      errBox.hidden = false;
      errBox.textContent = `Could not load workers: ${e.message}`;
    }
  }

  // Heartbeat ages move on their own; refresh them every 5 s.
  const tick = setInterval(() => {
    const now = Date.now() / 1000;
    for (const { w, el } of byKey.values()) {
      const hb = el.querySelector('.hb');
      if (hb) hb.textContent = `heartbeat ${fmtAgo(w.last_seen, now)}`;
    }
  }, 5000);
  const poll = setInterval(load, 30000);

  load();
  return {
    update(batch) {
      if (batch.resync) return load();
      for (const w of batch.workers) put(w);
      // Job moves change what workers run; the worker event may not come.
      if (batch.jobs.length && !batch.workers.length) {
        clearTimeout(this.t);
        this.t = setTimeout(load, 1000);
      }
    },
    unmount() {
      clearInterval(tick);
      clearInterval(poll);
      clearTimeout(this.t);
      clearTimeout(slurmT);
    },
  };
}
