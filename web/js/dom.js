// dom.js - building DOM from data safely. Everything from the server goes in
// as text (textContent / attribute values) through createElement, never as
// markup: no HTML-string sink is used anywhere in web/ (the browser tests
// grep for them).

const SVGNS = 'http://www.w3.org/2000/svg';

function fill(el, attrs, kids) {
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.setAttribute('class', v);
      else if (k === 'text') el.textContent = String(v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k === 'value' && 'value' in el) el.value = v;
      else if (k === 'checked' || k === 'disabled' || k === 'selected') el[k] = !!v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of kids.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// h('a', {href: '#/x', class: 'btn'}, 'text', child...)
export function h(tag, attrs, ...kids) {
  return fill(document.createElement(tag), attrs, kids);
}

export function s(tag, attrs, ...kids) {
  return fill(document.createElementNS(SVGNS, tag), attrs, kids);
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function setText(el, text) {
  const t = text === null || text === undefined ? '' : String(text);
  if (el.textContent !== t) el.textContent = t;
}

// ---- formatting ----
export function fmtDuration(sec) {
  if (sec === null || sec === undefined || !isFinite(sec)) return '–';
  sec = Math.max(0, Math.round(sec));
  const d = Math.floor(sec / 86400);
  const hh = Math.floor((sec % 86400) / 3600);
  const mm = Math.floor((sec % 3600) / 60);
  const ss = sec % 60;
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${String(mm).padStart(2, '0')}m`;
  if (mm) return `${mm}m ${String(ss).padStart(2, '0')}s`;
  return `${ss}s`;
}

export function fmtAgo(t, now = Date.now() / 1000) {
  if (!t) return '–';
  const d = now - t;
  if (d < 0) return 'just now';
  if (d < 5) return 'just now';
  return `${fmtDuration(d)} ago`;
}

export function fmtTime(t) {
  if (!t) return '–';
  const d = new Date(t * 1000);
  return d.toISOString().replace('T', ' ').slice(0, 19) + 'Z';
}

export function fmtBytes(n) {
  if (n === null || n === undefined || !isFinite(n)) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)} ${u[i]}`;
}

export function fmtMB(mb) {
  return mb === null || mb === undefined ? '–' : fmtBytes(mb * 1024 * 1024);
}

// ---- states: a glyph and a word next to every color ----
export const STATES = {
  queued: { icon: '◷', label: 'queued', group: 'wait' },
  built: { icon: '◔', label: 'built, waiting for test', group: 'wait' },
  tested: { icon: '◑', label: 'tested, waiting to publish', group: 'wait' },
  building: { icon: '⚙', label: 'building', group: 'run' },
  testing: { icon: '⚗', label: 'testing', group: 'run' },
  publishing: { icon: '⇪', label: 'publishing', group: 'run' },
  succeeded: { icon: '✔', label: 'succeeded', group: 'ok' },
  published: { icon: '✔', label: 'published', group: 'ok' },
  failed: { icon: '✖', label: 'failed', group: 'bad' },
  cancelled: { icon: '⊘', label: 'cancelled', group: 'off' },
  superseded: { icon: '↷', label: 'superseded', group: 'off' },
  none: { icon: '·', label: 'not built', group: 'none' },
};
export const STATE_ORDER = ['queued', 'building', 'built', 'testing', 'tested', 'publishing', 'succeeded', 'failed', 'cancelled', 'superseded'];
export const ACTIVE = new Set(['building', 'testing', 'publishing']);
export const WAITING = new Set(['queued', 'built', 'tested']);
export const FINAL = new Set(['succeeded', 'published', 'failed', 'cancelled', 'superseded']);

export function stateInfo(state) {
  return STATES[state] || { icon: '?', label: String(state || 'unknown'), group: 'off' };
}

export function badge(state, short = false) {
  const i = stateInfo(state);
  return h('span', { class: `badge st-${i.group}`, title: i.label, dataset: { state: String(state || '') } },
    h('span', { class: 'badge-icon', 'aria-hidden': 'true' }, i.icon), ' ', short ? String(state || '') : i.label);
}

// Selftest summary: {passed, checks:[{name, ok|status|passed, duration_s, message}]}
export function checkOk(c) {
  if (typeof c.ok === 'boolean') return c.ok;
  if (typeof c.passed === 'boolean') return c.passed;
  if (typeof c.status === 'string') return ['ok', 'pass', 'passed', 'success'].includes(c.status.toLowerCase());
  if (typeof c.exit_code === 'number') return c.exit_code === 0;
  return null;
}
export function selftestSummary(st) {
  if (!st || typeof st !== 'object') return null;
  const checks = Array.isArray(st.checks) ? st.checks : Array.isArray(st.results) ? st.results : [];
  const ok = checks.filter((c) => checkOk(c) === true).length;
  const passed = typeof st.passed === 'boolean' ? st.passed : typeof st.ok === 'boolean' ? st.ok : checks.length ? ok === checks.length : null;
  return { passed, ok, total: checks.length, checks };
}

export function attr(job, k) {
  const a = job.attrs || {};
  const r = job.resources || {};
  if (k === 'platform') return r.platform || a.platform || job.platform || '';
  if (k === 'sm') return a.sm || r.gpu_sm || '';
  if (k === 'isa') return a.isa || r.isa || '';
  if (k === 'cuda') return a.cuda || a.cuda_version || '';
  return a[k] || '';
}

// el.append() that skips null/false children (append(null) would add "null").
export function add(el, ...kids) {
  return fill(el, null, kids);
}
