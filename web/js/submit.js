// submit.js - the Submit view: a recipe + branch + filters + priority, with a
// live preview of how many variants that expands to (GET
// /recipes/{name}/expand), or an ad-hoc command. Submitted jobs are listed
// below with their live state.
import { h, add, clear, badge } from './dom.js';
import * as api from './api.js';
import { FIELDS } from './filters.js';

export function mount(root, ctx, arg, params) {
  const mode = params.get('mode') === 'adhoc' ? 'adhoc' : 'recipe';
  const submitted = new Map(); // id -> li
  const field = (id, label, el, hint) => h('div', { class: 'field' }, h('label', { for: id }, label), el, hint ? h('small', { class: 'muted' }, hint) : null);

  // ---- recipe form ----
  const recipeSel = h('select', { id: 'sb-recipe', name: 'recipe', required: true });
  const branchIn = h('input', { id: 'sb-branch', name: 'branch', type: 'text', value: params.get('branch') || 'main', autocomplete: 'off', spellcheck: 'false' });
  const prioIn = h('input', { id: 'sb-priority', name: 'priority', type: 'number', value: params.get('priority') || '0', min: '-100', max: '100', step: '1' });
  const selects = {};
  for (const k of ['sm', 'isa', 'cuda', 'platform']) {
    const fd = FIELDS.find((x) => x.key === k);
    selects[k] = h('select', { id: `sb-${k}`, name: k }, fd.options.map((o) => h('option', { value: o, selected: o === (params.get(k) || '') }, o || 'all')));
  }
  const preview = h('div', { class: 'preview', id: 'sb-preview', role: 'status', 'aria-live': 'polite' }, 'Pick a recipe.');
  const recipeBtn = h('button', { type: 'submit', class: 'btn primary', id: 'sb-submit' }, 'Submit builds');
  const recipeForm = h('form', { class: 'card form', id: 'sb-form', 'aria-labelledby': 'h-sb-recipe' },
    h('h2', { id: 'h-sb-recipe' }, 'Build recipe variants'),
    h('div', { class: 'form-grid' },
      field('sb-recipe', 'Recipe', recipeSel),
      field('sb-branch', 'Branch', branchIn),
      field('sb-sm', 'GPU SM', selects.sm),
      field('sb-isa', 'CPU ISA', selects.isa),
      field('sb-cuda', 'CUDA', selects.cuda),
      field('sb-platform', 'Platform', selects.platform),
      field('sb-priority', 'Priority', prioIn, 'higher runs first')),
    preview, h('div', { class: 'actions' }, recipeBtn));

  // ---- ad-hoc form ----
  const nameIn = h('input', { id: 'ah-name', type: 'text', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'my-check' });
  const cmdIn = h('input', { id: 'ah-command', type: 'text', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'make test' });
  const coresIn = h('input', { id: 'ah-cores', type: 'number', value: '1', min: '1' });
  const ramIn = h('input', { id: 'ah-ram', type: 'number', value: '1024', min: '64', step: '64' });
  const platIn = h('select', { id: 'ah-platform' }, ['x86_64-linux', 'aarch64-linux'].map((p) => h('option', { value: p }, p)));
  const ahPrio = h('input', { id: 'ah-priority', type: 'number', value: '0', step: '1' });
  const adhocBtn = h('button', { type: 'submit', class: 'btn primary', id: 'ah-submit' }, 'Submit command');
  const adhocForm = h('form', { class: 'card form', id: 'ah-form', 'aria-labelledby': 'h-sb-adhoc' },
    h('h2', { id: 'h-sb-adhoc' }, 'Run an ad-hoc command'),
    h('div', { class: 'form-grid' },
      field('ah-name', 'Name', nameIn), field('ah-command', 'Command', cmdIn), field('ah-cores', 'Cores', coresIn),
      field('ah-ram', 'RAM (MB)', ramIn), field('ah-platform', 'Platform', platIn), field('ah-priority', 'Priority', ahPrio)),
    h('div', { class: 'actions' }, adhocBtn));

  const tabRecipe = h('a', { href: ctx.hashFor('submit', null, {}), class: `tab ${mode === 'recipe' ? 'on' : ''}`, 'aria-current': mode === 'recipe' ? 'page' : null }, 'Recipe');
  const tabAdhoc = h('a', { href: ctx.hashFor('submit', null, { mode: 'adhoc' }), class: `tab ${mode === 'adhoc' ? 'on' : ''}`, 'aria-current': mode === 'adhoc' ? 'page' : null }, 'Ad-hoc command');
  const list = h('ul', { class: 'submitted', id: 'submitted' });
  const listCard = h('section', { class: 'card', hidden: true, 'aria-labelledby': 'h-submitted' }, h('h2', { id: 'h-submitted' }, 'Submitted'), list);
  const tokenNote = ctx.hasToken() ? null : h('p', { class: 'callout' }, 'Submitting needs a token with the submit role: use the Token button at the top right.');
  add(root, h('div', { class: 'view-head' }, h('h1', {}, 'Submit'), h('nav', { class: 'tabs', 'aria-label': 'Kind of submission' }, tabRecipe, tabAdhoc)),
    tokenNote, mode === 'recipe' ? recipeForm : adhocForm, listCard);

  function where() {
    const w = {};
    for (const [k, el] of Object.entries(selects)) if (el.value) w[k] = el.value;
    return w;
  }
  function persist() {
    if (mode !== 'recipe') return;
    ctx.setParams({ recipe: recipeSel.value, branch: branchIn.value.trim(), ...where(), priority: prioIn.value === '0' ? '' : prioIn.value });
  }

  let pseq = 0;
  let ptimer = 0;
  let armed = false;
  let count = null;
  async function updatePreview() {
    const my = ++pseq;
    if (armed) {
      armed = false;
      recipeBtn.textContent = 'Submit builds';
    }
    persist();
    if (!recipeSel.value) return;
    const w = Object.entries(where()).map(([k, v]) => `${k}=${v}`).join(',');
    preview.textContent = 'Counting variants…';
    try {
      const r = await api.get(`/recipes/${encodeURIComponent(recipeSel.value)}/expand`, { branch: branchIn.value.trim(), where: w });
      if (my !== pseq) return;
      const vs = api.listOf(r, 'variants');
      count = vs.length;
      add(clear(preview),
        h('strong', { id: 'sb-count' }, `${vs.length} variant${vs.length === 1 ? '' : 's'}`), ` will be queued from ${recipeSel.value} @ ${branchIn.value.trim() || 'main'}`,
        vs.length ? h('details', {}, h('summary', {}, 'Show names'), h('ul', { class: 'names' }, vs.slice(0, 200).map((v) => h('li', { class: 'mono' }, String(v.name))))) : null);
      recipeBtn.disabled = vs.length === 0;
    } catch (e) {
      if (my !== pseq) return;
      count = null;
      preview.textContent = `Cannot expand: ${e.message}`;
    }
  }
  const later = () => {
    clearTimeout(ptimer);
    ptimer = setTimeout(updatePreview, 250);
  };
  for (const el of [recipeSel, ...Object.values(selects)]) el.addEventListener('change', updatePreview);
  branchIn.addEventListener('input', later);
  prioIn.addEventListener('input', persist);

  function showJobs(jobs) {
    listCard.hidden = false;
    for (const j of jobs) {
      const li = h('li', { dataset: { id: String(j.id) } });
      submitted.set(j.id, li);
      fillLi(li, j);
      list.prepend(li);
    }
  }
  function fillLi(li, j) {
    clear(li).append(badge(j.state), ' ', h('a', { href: ctx.hashFor('build', j.id) }, `#${j.id} ${j.name}`));
  }

  recipeForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (count !== null && count > 20 && !confirmBig()) return;
    recipeBtn.disabled = true;
    try {
      const body = { recipe: recipeSel.value, branch: branchIn.value.trim() || 'main', priority: Number(prioIn.value) || 0 };
      const w = where();
      if (Object.keys(w).length) body.where = w;
      const r = await api.post('/jobs', body);
      const jobs = api.listOf(r, 'jobs');
      ctx.toast(`Queued ${jobs.length} build${jobs.length === 1 ? '' : 's'}.`);
      showJobs(jobs);
    } catch (err) {
      ctx.toast(`Submit failed: ${err.message}`, 'error');
    } finally {
      recipeBtn.disabled = false;
    }
  });
  // A big matrix is one click away from hours of farm time: say so, without a
  // blocking dialog (keyboard users and tests both get a second button).
  function confirmBig() {
    if (armed) {
      armed = false;
      setTimeout(() => recipeBtn.textContent = 'Submit builds', 0);
      return true;
    }
    armed = true;
    recipeBtn.textContent = `Really queue ${count} builds?`;
    return false;
  }

  adhocForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    adhocBtn.disabled = true;
    try {
      const r = await api.post('/jobs', { name: nameIn.value.trim(), command: cmdIn.value, cores: Number(coresIn.value) || 1, ram_mb: Number(ramIn.value) || 1024, platform: platIn.value, priority: Number(ahPrio.value) || 0 });
      const jobs = api.listOf(r, 'jobs');
      ctx.toast(`Queued ${jobs.length} job.`);
      showJobs(jobs);
    } catch (err) {
      ctx.toast(`Submit failed: ${err.message}`, 'error');
    } finally {
      adhocBtn.disabled = false;
    }
  });

  (async () => {
    let names = [];
    try {
      names = api.listOf(await api.get('/recipes'), 'recipes').map((x) => (typeof x === 'string' ? x : x.name)).filter(Boolean);
    } catch (e) {
      preview.textContent = `Cannot list recipes: ${e.message}`;
    }
    const want = params.get('recipe') || (names.includes('vllm') ? 'vllm' : names[0]);
    recipeSel.append(...names.map((n) => h('option', { value: n, selected: n === want }, n)));
    if (names.length) updatePreview();
  })();

  return {
    update(batch) {
      for (const j of batch.jobs) {
        const li = submitted.get(j.id);
        if (li) fillLi(li, j);
      }
    },
    unmount() {
      pseq++;
    },
  };
}
