// matrix.js - the Matrix view: for one recipe and branch, one grid per CUDA
// version and platform, SM rows by ISA columns. Each cell shows the state of
// the newest job for that variant as an icon + word + selftest result (color
// is never the only signal) and links to the build.
import { h, clear, stateInfo, attr, selftestSummary, ACTIVE, WAITING } from './dom.js';
import * as api from './api.js';

const ISA_ORDER = ['avx', 'avx2', 'avx512', 'avx512bf16', 'avx512vnni', 'armv8_2', 'armv9'];

function vAttr(v, k) {
  if (k === 'platform') return v.platform || (v.attrs && v.attrs.platform) || '';
  return (v.attrs && v.attrs[k]) || '';
}

export function mount(root, ctx, arg, params) {
  let recipe = params.get('recipe') || '';
  let branch = params.get('branch') || 'main';
  let variants = []; // [{name, sm, isa, cuda, platform}]
  const latest = new Map(); // variant name -> job
  const cells = new Map(); // variant name -> td
  let seq = 0;

  const recipeSel = h('select', { id: 'mx-recipe' });
  const branchIn = h('input', { id: 'mx-branch', type: 'text', value: branch, autocomplete: 'off', spellcheck: 'false' });
  const showBtn = h('button', { type: 'submit', class: 'btn primary', id: 'mx-show' }, 'Show');
  const summary = h('p', { class: 'lead', id: 'mx-summary' });
  const grids = h('div', { class: 'grids' });
  const errBox = h('p', { class: 'error', role: 'alert', hidden: true });
  const legend = h('ul', { class: 'legend', 'aria-label': 'Legend' },
    ['succeeded', 'failed', 'building', 'testing', 'queued', 'cancelled', 'none'].map((s) => {
      const i = stateInfo(s);
      return h('li', {}, h('span', { class: `badge st-${i.group}` }, h('span', { 'aria-hidden': 'true' }, i.icon), ' ', i.label));
    }));
  const form = h('form', { class: 'filters' },
    h('div', { class: 'field' }, h('label', { for: 'mx-recipe' }, 'Recipe'), recipeSel),
    h('div', { class: 'field' }, h('label', { for: 'mx-branch' }, 'Branch'), branchIn),
    h('div', { class: 'field f-reset' }, showBtn));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    recipe = recipeSel.value;
    branch = branchIn.value.trim() || 'main';
    ctx.setParams({ recipe, branch });
    load();
  });
  recipeSel.addEventListener('change', () => form.requestSubmit());

  root.append(h('div', { class: 'view-head' }, h('h1', {}, 'Matrix'), summary), form, legend, errBox, grids);

  async function loadRecipes() {
    let names = [];
    try {
      names = api.listOf(await api.get('/recipes'), 'recipes').map((x) => (typeof x === 'string' ? x : x.name)).filter(Boolean);
    } catch {
      /* fall back to what the URL says */
    }
    if (!recipe) recipe = names.includes('vllm') ? 'vllm' : names[0] || '';
    if (recipe && !names.includes(recipe)) names.push(recipe);
    clear(recipeSel).append(...names.map((n) => h('option', { value: n, selected: n === recipe }, n)));
  }

  async function load() {
    const my = ++seq;
    errBox.hidden = true;
    latest.clear();
    variants = [];
    if (!recipe) {
      clear(grids).append(h('p', { class: 'empty' }, 'No recipe yet: submit one first.'));
      return;
    }
    const [exp, jobs] = await Promise.all([
      api.get(`/recipes/${encodeURIComponent(recipe)}/expand`, { branch }).catch((e) => ({ error: e })),
      loadJobs(my),
    ]);
    if (my !== seq) return;
    if (exp && !exp.error) {
      variants = api.listOf(exp, 'variants').map((v) => ({ name: v.name, sm: String(vAttr(v, 'sm')), isa: String(vAttr(v, 'isa')), cuda: String(vAttr(v, 'cuda')), platform: String(vAttr(v, 'platform')) }));
    }
    for (const j of jobs) take(j);
    // Jobs for variants the recipe no longer lists still get a cell.
    const names = new Set(variants.map((v) => v.name));
    for (const j of latest.values()) {
      if (!names.has(j.name)) variants.push({ name: j.name, sm: String(attr(j, 'sm')), isa: String(attr(j, 'isa')), cuda: String(attr(j, 'cuda')), platform: String(attr(j, 'platform')) });
    }
    if (exp && exp.error && !variants.length) {
      errBox.hidden = false;
      errBox.textContent = `Could not expand recipe ${recipe}: ${exp.error.message}`;
    }
    render();
  }

  async function loadJobs(my) {
    const out = [];
    let before;
    for (let page = 0; page < 20 && my === seq; page++) {
      let r;
      try {
        r = await api.get('/jobs', { recipe, branch, limit: 1000, before_id: before });
      } catch (e) {
        errBox.hidden = false;
        errBox.textContent = `Could not load jobs: ${e.message}`;
        break;
      }
      const list = api.listOf(r, 'jobs');
      out.push(...list);
      before = r.next_before_id;
      if (!before || !list.length) break;
      // Stop once every variant has its newest job.
      if (variants.length && variants.every((v) => out.some((j) => j.name === v.name))) break;
    }
    return out;
  }

  function take(j) {
    if (j.recipe !== recipe || (j.branch || 'main') !== branch) return false;
    const cur = latest.get(j.name);
    if (cur && cur.id > j.id) return false;
    latest.set(j.name, j);
    return true;
  }

  function cellContent(td, v) {
    const j = latest.get(v.name);
    const state = j ? j.state : 'none';
    const i = stateInfo(state);
    const st = j ? selftestSummary(j.selftest) : null;
    let test = '';
    if (st && st.total) test = `${st.passed ? '✔' : '✖'} ${st.ok}/${st.total}`;
    else if (st && st.passed !== null) test = st.passed ? '✔ test' : '✖ test';
    const shortState = { succeeded: 'ok', failed: 'fail', building: 'build', testing: 'test', publishing: 'pub', queued: 'queue', built: 'wait', tested: 'wait', cancelled: 'cancel', superseded: 'old', none: '—' }[state] || state;
    const label = `SM${v.sm} ${v.isa} CUDA ${v.cuda}: ${i.label}${test ? `, selftest ${st.ok} of ${st.total} passed` : ''}${j && j.state === 'failed' && j.failed_stage ? ` in ${j.failed_stage}` : ''}`;
    clear(td);
    td.className = `cell st-${i.group}`;
    td.dataset.state = state;
    td.dataset.variant = v.name;
    const inner = [h('span', { class: 'cell-icon', 'aria-hidden': 'true' }, i.icon), h('span', { class: 'cell-state' }, shortState), test ? h('span', { class: 'cell-test' }, test) : null];
    if (j) td.append(h('a', { href: ctx.hashFor('build', j.id), 'aria-label': label, title: `${v.name} — ${label}` }, inner));
    else td.append(h('span', { class: 'cell-none', title: `${v.name} — not built`, 'aria-label': label }, inner));
  }

  function render() {
    clear(grids);
    cells.clear();
    const groups = new Map();
    for (const v of variants) {
      const k = `${v.cuda}|${v.platform}`;
      if (!groups.has(k)) groups.set(k, []);
      groups.get(k).push(v);
    }
    const keys = [...groups.keys()].sort((a, b) => {
      const [ca, pa] = a.split('|');
      const [cb, pb] = b.split('|');
      return cb.localeCompare(ca, undefined, { numeric: true }) || pb.localeCompare(pa);
    });
    if (!keys.length) grids.append(h('p', { class: 'empty' }, 'This recipe expands to no variants on this branch.'));
    for (const k of keys) {
      const vs = groups.get(k);
      const [cuda, platform] = k.split('|');
      const sms = [...new Set(vs.map((v) => v.sm))].sort((a, b) => Number(a) - Number(b));
      const isas = [...new Set(vs.map((v) => v.isa))].sort((a, b) => (ISA_ORDER.indexOf(a) + 1 || 99) - (ISA_ORDER.indexOf(b) + 1 || 99));
      const byKey = new Map(vs.map((v) => [`${v.sm}|${v.isa}`, v]));
      const hid = `g-${cuda}-${platform}`.replace(/[^A-Za-z0-9-]/g, '_');
      const table = h('table', { class: 'matrix', 'aria-labelledby': hid },
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'SM'), isas.map((i) => h('th', { scope: 'col' }, i)))),
        h('tbody', {}, sms.map((sm) => h('tr', {}, h('th', { scope: 'row' }, `SM${sm}`), isas.map((isa) => {
          const v = byKey.get(`${sm}|${isa}`);
          const td = h('td', { class: 'cell blank' });
          if (v) {
            cells.set(v.name, { td, v });
            cellContent(td, v);
          } else td.append(h('span', { class: 'sr-only' }, 'no such variant'));
          return td;
        })))));
      grids.append(h('section', { class: 'card grid-card' }, h('h2', { id: hid }, `CUDA ${cuda || '?'} · ${platform || '?'}`, h('span', { class: 'muted' }, ` ${vs.length} variants`)), h('div', { class: 'table-wrap' }, table)));
    }
    renderSummary();
  }

  function renderSummary() {
    let ok = 0;
    let bad = 0;
    let run = 0;
    let wait = 0;
    for (const v of variants) {
      const j = latest.get(v.name);
      if (!j) continue;
      if (j.state === 'succeeded' || j.state === 'published') ok++;
      else if (j.state === 'failed') bad++;
      else if (ACTIVE.has(j.state)) run++;
      else if (WAITING.has(j.state)) wait++;
    }
    summary.textContent = `${recipe} @ ${branch}: ${ok} of ${variants.length} green · ${bad} failed · ${run} running · ${wait} waiting`;
  }

  loadRecipes().then(load);
  return {
    update(batch) {
      if (batch.resync) return load();
      let changed = false;
      let newVariant = false;
      for (const j of batch.jobs) {
        if (!take(j)) continue;
        changed = true;
        const c = cells.get(j.name);
        if (c) cellContent(c.td, c.v);
        else if (!variants.some((v) => v.name === j.name)) {
          variants.push({ name: j.name, sm: String(attr(j, 'sm')), isa: String(attr(j, 'isa')), cuda: String(attr(j, 'cuda')), platform: String(attr(j, 'platform')) });
          newVariant = true;
        }
      }
      if (newVariant) render();
      else if (changed) renderSummary();
    },
    unmount() {
      seq++;
    },
  };
}
