// filters.js - the filter bar shared by Queue and Catalog. Filters live in
// the URL (#/queue?recipe=vllm&sm=90) so a filtered view can be shared.
import { h, attr } from './dom.js';

export const FIELDS = [
  { key: 'recipe', label: 'Recipe' },
  { key: 'branch', label: 'Branch' },
  { key: 'state', label: 'State', options: ['', 'queued', 'building', 'built', 'testing', 'tested', 'publishing', 'succeeded', 'failed', 'cancelled', 'superseded'] },
  { key: 'sm', label: 'SM', options: ['', '61', '70', '75', '80', '86', '89', '90', '100', '103', '120'] },
  { key: 'isa', label: 'ISA', options: ['', 'avx', 'avx2', 'avx512', 'avx512bf16', 'avx512vnni', 'armv8_2', 'armv9'] },
  { key: 'cuda', label: 'CUDA', options: ['', '12.9', '12.8'] },
  { key: 'platform', label: 'Platform', options: ['', 'x86_64-linux', 'aarch64-linux'] },
  { key: 'q', label: 'Search', search: true },
];

export function readFilters(params, keys) {
  const f = {};
  for (const k of keys) f[k] = params.get(k) || '';
  return f;
}

// Builds the bar; onChange(filters) runs after a select changes or typing pauses.
export function filterBar(fields, values, onChange, idPrefix) {
  let timer = 0;
  const inputs = {};
  const fire = () => {
    const f = {};
    for (const [k, el] of Object.entries(inputs)) f[k] = el.value.trim();
    onChange(f);
  };
  const kids = fields.map((fd) => {
    const id = `${idPrefix}-${fd.key}`;
    let el;
    if (fd.options) {
      el = h('select', { id, name: fd.key }, fd.options.map((o) => h('option', { value: o, selected: o === values[fd.key] }, o || 'any')));
      if (values[fd.key] && !fd.options.includes(values[fd.key])) el.append(h('option', { value: values[fd.key], selected: true }, values[fd.key]));
      el.addEventListener('change', fire);
    } else {
      el = h('input', { id, name: fd.key, type: fd.search ? 'search' : 'text', value: values[fd.key] || '', placeholder: fd.placeholder || (fd.search ? 'name or reason' : 'any'), autocomplete: 'off', spellcheck: 'false' });
      el.addEventListener('input', () => {
        clearTimeout(timer);
        timer = setTimeout(fire, 300);
      });
      el.addEventListener('keydown', (e) => {
        if (e.key === 'Enter') {
          clearTimeout(timer);
          fire();
        }
      });
    }
    inputs[fd.key] = el;
    return h('div', { class: `field f-${fd.key}` }, h('label', { for: id }, fd.label), el);
  });
  const reset = h('button', { type: 'button', class: 'btn', id: `${idPrefix}-reset` }, 'Clear filters');
  reset.addEventListener('click', () => {
    for (const el of Object.values(inputs)) el.value = '';
    fire();
  });
  return h('form', { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() }, kids, h('div', { class: 'field f-reset' }, reset));
}

// Does a job pass the filters? (The server filters too; this keeps live
// updates from adding rows the filters exclude.)
export function matches(job, f) {
  if (f.recipe && job.recipe !== f.recipe) return false;
  if (f.branch && job.branch !== f.branch) return false;
  if (f.state && job.state !== f.state) return false;
  for (const k of ['sm', 'isa', 'cuda', 'platform']) if (f[k] && String(attr(job, k)) !== f[k]) return false;
  if (f.q) {
    const q = f.q.toLowerCase();
    const hay = `${job.name || ''} ${job.reason || ''} ${job.wait_reason || ''} ${job.id}`.toLowerCase();
    if (!hay.includes(q)) return false;
  }
  return true;
}

// Query parameters for GET /jobs from the filters.
export function apiParams(f) {
  const p = {};
  for (const [k, v] of Object.entries(f)) if (v) p[k] = v;
  return p;
}
