// queue.js - the Queue view: counts per state, running builds (elapsed, ETA,
// stage), waiting builds (position and why they wait), finished builds
// (duration, result), with filters and search kept in the URL. Long lists
// are windowed (waiting: 100 rows at a time) or paged (finished: 50 per page
// through before_id), so 10,000 jobs stay quick.
import { h, clear, setText, badge, fmtDuration, fmtAgo, attr, stateInfo, STATE_ORDER, ACTIVE, WAITING, FINAL, selftestSummary } from './dom.js';
import * as api from './api.js';
import { FIELDS, readFilters, filterBar, matches, apiParams } from './filters.js';
import { KeyedTable } from './table.js';
import { History } from './stats.js';

const PAGE = 50;
const WINDOW = 100;

function jobLink(ctx, job) {
  return h('a', { href: ctx.hashFor('build', job.id), class: 'job-link' },
    h('span', { class: 'job-id' }, `#${job.id}`), ' ', h('span', { class: 'job-name' }, job.name || '(unnamed)'));
}

function variantTags(job) {
  const tags = [];
  for (const [k, pre] of [['sm', 'SM'], ['isa', ''], ['cuda', 'CUDA '], ['platform', '']]) {
    const v = attr(job, k);
    if (v && !(k === 'platform' && v === 'x86_64-linux')) tags.push(h('span', { class: 'tag' }, pre + v));
  }
  if (job.branch) tags.push(h('span', { class: 'tag tag-branch' }, job.branch));
  return h('span', { class: 'tags' }, tags);
}

export function mount(root, ctx, arg, params) {
  const keys = FIELDS.map((x) => x.key);
  let f = readFilters(params, keys);
  let before = params.get('before') || '';
  const hist = new History();
  let running = new Map();
  let waiting = new Map();
  let finished = [];
  let nextBefore = null;
  let counts = {};
  let countsKnown = false;
  let waitPartial = false;
  let waitOrder = null;
  let waitOrderDirty = true;
  let shownWaiting = WINDOW;
  let loadSeq = 0;
  let countsTimer = 0;
  const known = new Map();

  // ---- layout ----
  const etaLine = h('p', { class: 'lead', id: 'queue-eta' });
  const countsBar = h('ul', { class: 'counts', id: 'counts', 'aria-label': 'Jobs per state' });
  const bar = filterBar(FIELDS, f, (nf) => {
    f = nf;
    before = '';
    persist();
    load();
  }, 'qf');
  const runTable = new KeyedTable([
    { label: 'Build', cls: 'c-name', key: (j) => `${j.id}|${j.name}|${j.branch}`, build: (j) => h('div', {}, jobLink(ctx, j), variantTags(j)) },
    { label: 'Stage', cls: 'c-state', key: (j) => `${j.state}|${j.stage}`, build: (j) => h('span', {}, badge(j.state), j.stage ? h('span', { class: 'sub' }, ` ${j.stage}`) : null) },
    { label: 'Worker', cls: 'c-worker', key: (j) => j.worker || '', build: (j) => j.worker || '–' },
    { label: 'Elapsed', cls: 'c-num', key: (j, now) => String(Math.floor(now - (j.started_at || now))), build: (j, now) => fmtDuration(now - (j.started_at || now)) },
    { label: 'ETA', cls: 'c-eta', key: (j, now) => etaKey(j, now), build: (j, now) => etaCell(j, now) },
  ], { caption: 'Running builds', empty: 'Nothing is building right now.', cls: 't-running' });
  const waitTable = new KeyedTable([
    { label: 'Pos', cls: 'c-num c-pos', key: (j) => String(j._pos), build: (j) => `${j._pos}` },
    { label: 'Build', cls: 'c-name', key: (j) => `${j.id}|${j.name}|${j.branch}`, build: (j) => h('div', {}, jobLink(ctx, j), variantTags(j)) },
    { label: 'State', cls: 'c-state', key: (j) => `${j.state}|${j.priority}`, build: (j) => h('span', {}, badge(j.state), j.priority ? h('span', { class: 'prio', title: 'priority' }, ` ↑${j.priority}`) : null) },
    { label: 'Why it waits', cls: 'c-reason', key: (j) => j.wait_reason || '', build: (j) => j.wait_reason || 'waiting to be placed' },
    { label: 'Waiting', cls: 'c-num', key: (j, now) => String(Math.floor((now - (j.created_at || now)) / 60)), build: (j, now) => fmtDuration(now - (j.created_at || now)) },
  ], { caption: 'Waiting builds', empty: 'Nothing waits.', cls: 't-waiting' });
  const finTable = new KeyedTable([
    { label: 'Build', cls: 'c-name', key: (j) => `${j.id}|${j.name}|${j.branch}`, build: (j) => h('div', {}, jobLink(ctx, j), variantTags(j)) },
    { label: 'Result', cls: 'c-state', key: (j) => `${j.state}|${j.failed_stage}`, build: (j) => h('span', {}, badge(j.state), j.failed_stage ? h('span', { class: 'sub' }, ` in ${j.failed_stage}`) : null) },
    { label: 'Detail', cls: 'c-reason', key: (j) => `${j.reason}|${JSON.stringify(j.selftest)}`, build: (j) => detail(j) },
    { label: 'Duration', cls: 'c-num', key: (j) => `${j.started_at}|${j.finished_at}`, build: (j) => (j.started_at && j.finished_at ? fmtDuration(j.finished_at - j.started_at) : '–') },
    { label: 'Finished', cls: 'c-num', key: (j, now) => String(Math.floor((now - (j.finished_at || now)) / 60)), build: (j, now) => fmtAgo(j.finished_at, now) },
  ], { caption: 'Finished builds', empty: 'No finished builds match.', cls: 't-finished' });

  const runHead = h('h2', { id: 'h-running' }, 'Building');
  const waitHead = h('h2', { id: 'h-waiting' }, 'Waiting');
  const finHead = h('h2', { id: 'h-finished' }, 'Finished');
  const moreWaiting = h('button', { type: 'button', class: 'btn', id: 'more-waiting' }, 'Show more');
  moreWaiting.addEventListener('click', () => {
    shownWaiting += WINDOW;
    render();
  });
  const newer = h('button', { type: 'button', class: 'btn', id: 'page-newer' }, '← Newest');
  const older = h('button', { type: 'button', class: 'btn', id: 'page-older' }, 'Older →');
  newer.addEventListener('click', () => {
    before = '';
    persist();
    loadFinished(loadSeq);
  });
  older.addEventListener('click', () => {
    if (!nextBefore) return;
    before = String(nextBefore);
    persist();
    loadFinished(loadSeq);
  });
  const secRun = h('section', { class: 'card', 'aria-labelledby': 'h-running' }, runHead, runTable.el);
  const secWait = h('section', { class: 'card', 'aria-labelledby': 'h-waiting' }, waitHead, waitTable.el, h('div', { class: 'pager' }, moreWaiting));
  const secFin = h('section', { class: 'card', 'aria-labelledby': 'h-finished' }, finHead, finTable.el, h('div', { class: 'pager' }, newer, older));
  const errBox = h('p', { class: 'error', role: 'alert', hidden: true });

  root.append(
    h('div', { class: 'view-head' }, h('h1', {}, 'Queue'), etaLine),
    countsBar, bar, errBox, secRun, secWait, secFin);

  function persist() {
    ctx.setParams({ ...f, before });
  }

  function etaKey(j, now) {
    const est = hist.estimate(j);
    return est ? String(Math.floor((j.started_at + est - now) / 30)) : 'x';
  }
  function etaCell(j, now) {
    const est = hist.estimate(j);
    if (!est || !j.started_at) return h('span', { class: 'muted' }, 'no history yet');
    const el = now - j.started_at;
    const left = j.started_at + est - now;
    const pct = Math.max(0, Math.min(100, (el / est) * 100));
    const fillBar = h('span', { class: 'bar' });
    fillBar.style.width = `${pct}%`; // CSSOM, allowed under style-src 'self'
    return h('div', { class: 'eta' },
      h('div', { class: 'progress', role: 'img', 'aria-label': `${Math.round(pct)}% of the usual time` }, fillBar),
      h('span', {}, left >= 0 ? `~${fmtDuration(left)} left` : `${fmtDuration(-left)} over usual`));
  }
  function detail(j) {
    if (j.state === 'failed') return h('span', { class: 'reason-bad' }, j.reason || 'failed');
    const st = selftestSummary(j.selftest);
    if (st && st.total) return h('span', { class: st.passed ? 'ok' : 'reason-bad' }, `selftest ${st.ok}/${st.total} passed`);
    if (j.reason) return j.reason;
    return j.artifact ? 'artifact published' : '';
  }

  let countsKey = '';
  function renderCounts() {
    const key = JSON.stringify([counts, f.state]);
    if (key === countsKey) return;
    countsKey = key;
    clear(countsBar);
    const total = Object.values(counts).reduce((a, b) => a + (b || 0), 0);
    const mk = (state, n, label) => {
      const on = f.state === state;
      const b = h('button', { type: 'button', class: `count ${on ? 'on' : ''}`, 'aria-pressed': on ? 'true' : 'false', dataset: { state } },
        state ? badge(state, true) : h('span', { class: 'badge st-all' }, 'all'), h('strong', { class: 'n' }, String(n ?? 0)));
      b.title = label;
      b.addEventListener('click', () => {
        f.state = on ? '' : state;
        const sel = document.getElementById('qf-state');
        if (sel) sel.value = f.state;
        before = '';
        persist();
        renderCounts(); // show the choice now; rows follow when loaded
        countsBar.querySelector(`button[data-state="${f.state}"]`)?.focus();
        load();
      });
      return h('li', {}, b);
    };
    countsBar.append(mk('', total, 'show every state'));
    for (const s of STATE_ORDER) if (counts[s] || ['queued', 'building', 'succeeded', 'failed'].includes(s)) countsBar.append(mk(s, counts[s] || 0, `show only ${stateInfo(s).label}`));
  }

  function renderEta(now) {
    const run = [...running.values()];
    const nWait = [...WAITING].reduce((a, s) => a + (counts[s] || 0), 0);
    const nRun = [...ACTIVE].reduce((a, s) => a + (counts[s] || 0), 0);
    let left = 0;
    for (const j of run) left += Math.max(0, (j.started_at || now) + (hist.estimate(j) || 0) - now);
    const per = hist.estimate({}) || 0;
    const slots = Math.max(1, run.length);
    const txt = [];
    txt.push(`${nRun} building`, `${nWait} waiting`);
    if (nRun + nWait === 0) txt.push('the farm is idle');
    else if (per) txt.push(`all done in about ${fmtDuration((left + nWait * per) / slots)} at the current pace`);
    setText(etaLine, txt.join(' · '));
  }

  function render() {
    const now = Date.now() / 1000;
    const showRun = !f.state || ACTIVE.has(f.state);
    const showWait = !f.state || WAITING.has(f.state);
    const showFin = !f.state || FINAL.has(f.state);
    secRun.hidden = !showRun;
    secWait.hidden = !showWait;
    secFin.hidden = !showFin;
    const run = [...running.values()].sort((a, b) => (a.started_at || 0) - (b.started_at || 0) || a.id - b.id);
    runTable.set(run, now);
    setText(runHead, `Building (${run.length})`);
    // Sorting 10,000 waiting jobs on every live update is the expensive
    // part of a render: re-sort only when a job joins or changes priority,
    // otherwise refresh the cached order.
    let wait;
    if (waitOrderDirty || !waitOrder) {
      wait = [...waiting.values()].sort((a, b) => (a.position ?? Infinity) - (b.position ?? Infinity) || (b.priority || 0) - (a.priority || 0) || a.id - b.id);
      waitOrderDirty = false;
    } else {
      wait = [];
      for (const j of waitOrder) {
        const cur = waiting.get(j.id);
        if (cur) wait.push(cur);
      }
    }
    waitOrder = wait;
    wait.forEach((j, i) => (j._pos = j.position ?? (waitPartial ? `≈${i + 1}` : i + 1)));
    waitTable.set(wait.slice(0, shownWaiting), now);
    const nWait = waitPartial ? [...WAITING].reduce((a, st) => a + (counts[st] || 0), 0) : wait.length;
    setText(waitHead, `Waiting (${nWait}${nWait > shownWaiting ? `, first ${shownWaiting} shown` : ''}${waitPartial ? ' · loading all of them for exact positions…' : ''})`);
    waitHead.dataset.partial = String(waitPartial);
    moreWaiting.hidden = wait.length <= shownWaiting;
    finTable.set(finished, now);
    setText(finHead, before ? `Finished (older than #${before})` : 'Finished (newest first)');
    newer.disabled = !before;
    older.disabled = !nextBefore;
    renderCounts();
    renderEta(now);
  }

  // Finished = the final states, newest first. One request per state (any
  // server can answer those), merged; the page cursor is the last id shown.
  async function loadFinished(seq, countsP) {
    if (f.state && !FINAL.has(f.state)) {
      finished = [];
      nextBefore = null;
      return render();
    }
    const states = f.state ? [f.state] : ['succeeded', 'failed', 'cancelled', 'superseded'];
    try {
      const rs = await fetchStates(states, { ...apiParams(f), limit: PAGE, before_id: before || undefined }, countsP);
      if (seq !== loadSeq) return;
      const byId = new Map();
      let more = false;
      for (const [, r] of rs) {
        if (!r) continue;
        const list = api.listOf(r, 'jobs');
        if (r.next_before_id || list.length >= PAGE) more = true;
        for (const j of list) if (FINAL.has(j.state) && matches(j, f)) byId.set(j.id, j);
      }
      const list = [...byId.values()].sort((a, b) => b.id - a.id);
      list.forEach((j) => {
        hist.add(j);
        known.set(j.id, j.state);
      });
      if (list.length > PAGE) more = true;
      finished = list.slice(0, PAGE);
      nextBefore = more && finished.length ? finished[finished.length - 1].id : null;
      render();
    } catch (e) {
      showErr(e);
    }
  }

  function showErr(e) {
    errBox.hidden = false;
    errBox.textContent = `Could not load jobs: ${e.message}`;
  }

  async function loadCounts(seq) {
    const nf = { ...f, state: '' };
    try {
      const r = await api.get('/jobs', { ...apiParams(nf), limit: 1 });
      if (seq !== loadSeq) return;
      if (r && r.counts) {
        counts = { ...r.counts };
        countsKnown = true;
      }
      render();
    } catch (e) {
      showErr(e);
    }
  }

  const hasJobs = (st) => !countsKnown || (counts[st] || 0) > 0;
  // One request per state. The usual states go out at once, with the counts
  // request; the rare ones (built, tested, ...) wait for the counts and are
  // asked for only when they have jobs. That keeps a load to about six
  // parallel requests (a browser's connection limit) and one round trip.
  const COMMON = new Set(['queued', 'building', 'succeeded', 'failed']);
  function fetchStates(states, params, countsP) {
    return Promise.all(states.map(async (st) => {
      if (countsP && !COMMON.has(st) && f.state !== st) await countsP;
      if ((!countsP || !COMMON.has(st)) && f.state !== st && !hasJobs(st)) return [st, null];
      return [st, await api.get('/jobs', { ...params, state: st })];
    }));
  }

  async function loadStates(states, limit, cursors, countsP) {
    const want = states.filter((s) => !f.state || f.state === s);
    const res = await fetchStates(want, { ...apiParams(f), limit }, countsP);
    const m = new Map();
    for (const [st, r] of res) {
      if (!r) continue;
      for (const j of api.listOf(r, 'jobs')) if (matches(j, f)) m.set(j.id, j);
      if (cursors && r.next_before_id) cursors[st] = r.next_before_id;
    }
    return m;
  }

  // The list API is newest first, but the front of the queue is the oldest
  // work: the first page paints at once, then every waiting job comes in one
  // GET /queue (up to MAX_WAITING) so positions are exact.
  const MAX_WAITING = 20000;
  async function completeWaiting(seq) {
    let r = null;
    try {
      r = await api.get('/queue', { ...apiParams(f), limit: MAX_WAITING });
    } catch (e) {
      r = null;
    }
    if (seq !== loadSeq) return;
    for (const j of api.listOf(r, 'jobs')) {
      // A live event may already have moved this job on.
      if (!matches(j, f) || (known.has(j.id) && known.get(j.id) !== j.state)) continue;
      if (!waiting.has(j.id)) waiting.set(j.id, j);
      known.set(j.id, j.state);
      waitOrderDirty = true;
    }
    waitPartial = false;
    render();
  }

  async function load() {
    const seq = ++loadSeq;
    errBox.hidden = true;
    // History (for ETAs) is loaded last and not waited for.
    const countsP = loadCounts(seq);
    const fin = loadFinished(seq, countsP);
    const cursorsBox = { c: {} };
    try {
      const cursors = cursorsBox.c;
      const [run, wait] = await Promise.all([loadStates([...ACTIVE], 500, null, countsP), loadStates([...WAITING], WINDOW * 2, cursors, countsP)]);
      if (seq !== loadSeq) return;
      running = run;
      waiting = wait;
      waitOrderDirty = true;
      for (const j of [...run.values(), ...wait.values()]) known.set(j.id, j.state);
      waitPartial = Object.keys(cursors).length > 0;
      render();
    } catch (e) {
      showErr(e);
    }
    await fin;
    // The rest of the waiting list only after the first screen is complete.
    if (waitPartial && seq === loadSeq) await completeWaiting(seq);
    if (!hist.loaded && seq === loadSeq) hist.load(apiParams({ recipe: f.recipe })).then(() => seq === loadSeq && render());
  }

  function scheduleCounts() {
    clearTimeout(countsTimer);
    countsTimer = setTimeout(() => loadCounts(loadSeq), 1500);
  }

  function update(batch) {
    if (batch.resync) return load();
    if (!batch.jobs.length) return;
    const noState = { ...f, state: '' };
    const prevWaiting = new Map();
    for (const j of batch.jobs) {
      hist.add(j);
      const prev = known.get(j.id);
      if (matches(j, noState)) {
        if (prev && prev !== j.state) counts[prev] = Math.max(0, (counts[prev] || 0) - 1);
        if (prev !== j.state) counts[j.state] = (counts[j.state] || 0) + 1;
        known.set(j.id, j.state);
      }
      running.delete(j.id);
      if (waiting.has(j.id)) prevWaiting.set(j.id, waiting.get(j.id));
      waiting.delete(j.id);
      const fi = finished.findIndex((x) => x.id === j.id);
      if (fi >= 0) finished.splice(fi, 1);
      if (!matches(j, f)) continue;
      if (ACTIVE.has(j.state)) running.set(j.id, j);
      else if (WAITING.has(j.state)) {
        const old = prevWaiting.get(j.id);
        if (!old || old.priority !== j.priority || old.position !== j.position) waitOrderDirty = true;
        waiting.set(j.id, j);
      }
      else if (FINAL.has(j.state)) {
        const minId = finished.length ? finished[finished.length - 1].id : 0;
        if (!before || j.id < Number(before)) {
          if (!before && (j.id > minId || finished.length < PAGE)) finished.push(j);
          else if (before && j.id > minId) finished.push(j);
        }
      }
    }
    finished.sort((a, b) => b.id - a.id);
    if (finished.length > PAGE) finished.length = PAGE;
    render();
    scheduleCounts();
  }

  const tick = setInterval(() => {
    if (running.size) {
      const now = Date.now() / 1000;
      runTable.set([...running.values()].sort((a, b) => (a.started_at || 0) - (b.started_at || 0) || a.id - b.id), now);
      renderEta(now);
    }
  }, 1000);

  load();
  return {
    update,
    unmount() {
      clearInterval(tick);
      clearTimeout(countsTimer);
      loadSeq++;
    },
  };
}
