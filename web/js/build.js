// build.js - one build: stages with timings, live log tail (follow/pause,
// search, download), selftest results per kernel check, metadata, and the
// cancel and retry buttons.
import { h, add, clear, setText, badge, fmtDuration, fmtTime, fmtMB, fmtBytes, fmtAgo, ACTIVE, FINAL, WAITING, selftestSummary, checkOk } from './dom.js';
import * as api from './api.js';

const TAIL_BYTES = 256 * 1024;
const MAX_LINES = 20000;

export function mount(root, ctx, arg) {
  const id = arg;
  let job = null;
  let alive = true;
  let offset = 0;
  let fetching = false;
  let again = false;
  let follow = true;
  let lines = [''];
  let pendingNew = 0;
  let search = '';
  const decoder = new TextDecoder('utf-8');

  const title = h('h1', { class: 'build-title' }, `Build #${id}`);
  const stateBox = h('div', { class: 'build-state' });
  const cancelBtn = h('button', { type: 'button', class: 'btn danger', id: 'btn-cancel' }, 'Cancel build');
  const retryBtn = h('button', { type: 'button', class: 'btn', id: 'btn-retry' }, 'Retry build');
  const matrixLink = h('a', { class: 'btn link', id: 'to-matrix', href: '#/matrix' }, 'Open in matrix');
  const stagesEl = h('ol', { class: 'stages', 'aria-label': 'Stages' });
  const metaEl = h('dl', { class: 'meta' });
  const selftestEl = h('div', { class: 'selftest' });
  const reasonEl = h('p', { class: 'callout', hidden: true });
  const errBox = h('p', { class: 'error', role: 'alert', hidden: true });

  const followBtn = h('button', { type: 'button', class: 'btn', id: 'log-follow', 'aria-pressed': 'true' }, 'Pause');
  const searchIn = h('input', { type: 'search', id: 'log-search', placeholder: 'search the log', autocomplete: 'off', spellcheck: 'false' });
  const dlBtn = h('button', { type: 'button', class: 'btn', id: 'log-download' }, 'Download log');
  const logInfo = h('span', { class: 'muted', id: 'log-info' });
  const pre = h('pre', { class: 'log', id: 'log', tabindex: '0', 'aria-label': 'Build log', 'aria-live': 'off' });

  root.append(
    h('div', { class: 'view-head build-head' },
      h('div', {}, h('p', { class: 'crumbs' }, h('a', { href: '#/queue' }, 'Queue'), ' / build'), title, stateBox),
      h('div', { class: 'actions' }, cancelBtn, retryBtn, matrixLink)),
    errBox, reasonEl,
    h('div', { class: 'build-grid' },
      h('section', { class: 'card', 'aria-labelledby': 'h-stages' }, h('h2', { id: 'h-stages' }, 'Stages'), stagesEl,
        h('h2', { id: 'h-selftest' }, 'Selftest'), selftestEl),
      h('section', { class: 'card', 'aria-labelledby': 'h-meta' }, h('h2', { id: 'h-meta' }, 'Details'), metaEl)),
    h('section', { class: 'card log-card', 'aria-labelledby': 'h-log' },
      h('div', { class: 'log-bar' }, h('h2', { id: 'h-log' }, 'Log'),
        h('label', { for: 'log-search', class: 'sr-only' }, 'Search the log'), searchIn, followBtn, dlBtn, logInfo),
      pre));

  cancelBtn.addEventListener('click', () => act('cancel'));
  retryBtn.addEventListener('click', () => act('retry'));
  followBtn.addEventListener('click', () => {
    follow = !follow;
    followBtn.setAttribute('aria-pressed', String(follow));
    setText(followBtn, follow ? 'Pause' : 'Follow');
    if (follow) {
      pendingNew = 0;
      renderLog(true);
    }
    renderLogInfo();
  });
  let searchTimer = 0;
  searchIn.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      search = searchIn.value;
      renderLog(true);
    }, 200);
  });
  dlBtn.addEventListener('click', async () => {
    try {
      await api.download(`/jobs/${encodeURIComponent(id)}/log`, `${job ? job.name : 'job-' + id}.log`);
    } catch (e) {
      ctx.toast(`Download failed: ${e.message}`, 'error');
    }
  });

  async function act(what) {
    const btn = what === 'cancel' ? cancelBtn : retryBtn;
    btn.disabled = true;
    try {
      const r = await api.post(`/jobs/${encodeURIComponent(id)}/${what}`);
      ctx.toast(what === 'cancel' ? `Build #${id} cancelled.` : `Build #${id} queued again.`);
      if (r && r.id !== undefined) setJob(r);
      else if (r && r.job) setJob(r.job);
      else reload();
    } catch (e) {
      ctx.toast(`${what === 'cancel' ? 'Cancel' : 'Retry'} failed: ${e.message}`, 'error');
    } finally {
      updateButtons();
    }
  }

  function updateButtons() {
    if (!job) return;
    cancelBtn.disabled = FINAL.has(job.state);
    retryBtn.disabled = !FINAL.has(job.state) || job.state === 'succeeded' || job.state === 'published';
  }

  function stageTimes(st) {
    const t = job.stage_times || job.timings || {};
    if (t[st]) return t[st];
    // kiln serve reports when the current stage started.
    if (st === job.stage && job.stage_started_at && ACTIVE.has(job.state)) return { started_at: job.stage_started_at };
    return null;
  }

  function renderStages() {
    clear(stagesEl);
    const stages = Array.isArray(job.stages) && job.stages.length ? job.stages : [job.stage || 'build'];
    const cur = stages.indexOf(job.stage);
    const now = Date.now() / 1000;
    stages.forEach((st, i) => {
      let status;
      if (job.state === 'failed' && (job.failed_stage === st || (!job.failed_stage && i === cur))) status = 'failed';
      else if (job.state === 'succeeded' || job.state === 'published') status = 'done';
      else if (i < cur) status = 'done';
      else if (i === cur && ACTIVE.has(job.state)) status = 'running';
      else if (i === cur && (job.state === 'cancelled' || job.state === 'superseded')) status = 'stopped';
      else if (i === cur && WAITING.has(job.state)) status = 'waiting';
      else status = 'pending';
      const icon = { done: '✔', running: '⚙', failed: '✖', waiting: '◷', pending: '○', stopped: '⊘' }[status];
      const t = stageTimes(st);
      let timing = '';
      if (t && t.started_at) timing = fmtDuration((t.finished_at || now) - t.started_at) + (t.finished_at ? '' : ' so far');
      else if (status === 'running' && job.started_at && i === 0) timing = `${fmtDuration(now - job.started_at)} so far`;
      else if (status === 'done' && stages.length === 1 && job.started_at && job.finished_at) timing = fmtDuration(job.finished_at - job.started_at);
      stagesEl.append(h('li', { class: `stage s-${status}`, dataset: { stage: st, status } },
        h('span', { class: 'stage-icon', 'aria-hidden': 'true' }, icon),
        h('span', { class: 'stage-name' }, st),
        h('span', { class: 'stage-status' }, status),
        h('span', { class: 'stage-time' }, timing, t && t.worker ? h('span', { class: 'muted' }, ` on ${t.worker}`) : null)));
    });
  }

  function renderSelftest() {
    clear(selftestEl);
    const st = selftestSummary(job.selftest);
    if (!st) {
      selftestEl.append(h('p', { class: 'muted' }, job.stages && job.stages.includes('test') ? 'No selftest results yet.' : 'This build has no test stage.'));
      return;
    }
    selftestEl.append(h('p', {}, badge(st.passed === false ? 'failed' : st.passed ? 'succeeded' : 'queued', true), ` ${st.ok} of ${st.total} checks passed`));
    if (!st.total) return;
    selftestEl.append(h('table', { class: 'grid-table compact' },
      h('thead', {}, h('tr', {}, ['Check', 'Result', 'Time', 'Message'].map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, st.checks.map((c) => {
        const ok = checkOk(c);
        return h('tr', {},
          h('td', {}, String(c.name || c.kernel || '?')),
          h('td', {}, h('span', { class: `badge ${ok ? 'st-ok' : ok === false ? 'st-bad' : 'st-off'}` }, ok ? '✔ pass' : ok === false ? '✖ fail' : '– skipped')),
          h('td', { class: 'c-num' }, c.duration_s != null ? `${Number(c.duration_s).toFixed(1)} s` : '–'),
          h('td', {}, String(c.message || c.error || '')));
      }))));
  }

  function renderMeta() {
    clear(metaEl);
    const r = job.resources || {};
    const now = Date.now() / 1000;
    const rows = [
      ['Name', job.name],
      ['Recipe', job.recipe ? `${job.recipe} @ ${job.branch || '?'}` : 'ad-hoc'],
      ['Commit', job.commit ? String(job.commit).slice(0, 12) : null],
      ['Attempt', job.attempt === 0 ? `not started (up to ${job.max_attempts ?? 1})` : `${job.attempt ?? 1} of ${job.max_attempts ?? 1}`],
      ['Priority', job.priority],
      ['Worker', job.worker],
      ['Platform', r.platform],
      ['GPU SM / ISA', r.gpu_sm || r.isa ? `SM${r.gpu_sm || '–'} / ${r.isa || '–'}` : null],
      ['Limits', r.cores ? `${r.cores} cores, ${fmtMB(r.ram_mb)} RAM, timeout ${fmtDuration(job.timeout_s)}` : null],
      ['Created', job.created_at ? `${fmtTime(job.created_at)} (${fmtAgo(job.created_at, now)})` : null],
      ['Started', job.started_at ? fmtTime(job.started_at) : null],
      ['Finished', job.finished_at ? fmtTime(job.finished_at) : null],
      ['Duration', job.started_at ? fmtDuration((job.finished_at || now) - job.started_at) : null],
      ['Exit code', job.exit_code],
      ['Peak RAM', job.peak_ram_mb != null ? fmtMB(job.peak_ram_mb) : null],
      ['CPU time', job.cpu_s != null ? fmtDuration(job.cpu_s) : null],
      ['Depends on', Array.isArray(job.depends) && job.depends.length ? h('span', { class: 'tags' }, job.depends.map((d) => h('a', { class: 'tag', href: ctx.hashFor('build', d) }, `#${d}`))) : null],
      ['Artifact', job.artifact ? `${job.artifact.digest} (${fmtBytes(job.artifact.size)})` : null],
      ['Command', job.command],
    ];
    for (const [k, v] of Object.entries(job.attrs || {})) if (typeof v !== 'object') rows.push([`attr ${k}`, v]);
    for (const [k, v] of Object.entries(job.env || {})) rows.push([`env ${k}`, v]);
    for (const [k, v] of rows) {
      if (v === null || v === undefined || v === '') continue;
      metaEl.append(h('dt', {}, k), h('dd', { class: k === 'Command' || k === 'Artifact' ? 'mono' : '' }, v instanceof Node ? v : String(v)));
    }
  }

  function setJob(j) {
    const firstTime = !job;
    job = j;
    setText(title, `${j.name || 'job'} `);
    title.append(h('span', { class: 'job-id' }, `#${j.id}`));
    add(clear(stateBox), badge(j.state), j.stage && !FINAL.has(j.state) ? h('span', { class: 'sub' }, ` stage ${j.stage}`) : null);
    if (j.wait_reason && WAITING.has(j.state)) stateBox.append(h('span', { class: 'wait' }, ` — ${j.wait_reason}`));
    document.title = `${j.name} #${j.id} · kiln`;
    const reason = j.state === 'failed' ? `Failed${j.failed_stage ? ` in ${j.failed_stage}` : ''}: ${j.reason || 'no reason given'}` : j.state === 'cancelled' ? `Cancelled${j.reason ? `: ${j.reason}` : ''}` : '';
    reasonEl.hidden = !reason;
    setText(reasonEl, reason);
    if (j.recipe) matrixLink.href = ctx.hashFor('matrix', null, { recipe: j.recipe, branch: j.branch || '' });
    matrixLink.hidden = !j.recipe;
    renderStages();
    renderSelftest();
    renderMeta();
    updateButtons();
    renderLogInfo();
    if (firstTime) {
      offset = Math.max(0, (j.log_size || 0) - TAIL_BYTES);
      if (offset > 0) lines = ['', ''];
      fetchLog();
    }
  }

  async function reload() {
    try {
      setJob(await api.get(`/jobs/${encodeURIComponent(id)}`));
      errBox.hidden = true;
    } catch (e) {
      errBox.hidden = false;
      errBox.textContent = `Could not load build #${id}: ${e.message}`;
    }
  }

  async function fetchLog() {
    if (fetching) {
      again = true;
      return;
    }
    fetching = true;
    try {
      do {
        again = false;
        const start = offset;
        const r = await api.getLog(id, offset);
        if (!alive) return;
        if (r.bytes.length) {
          offset = r.size;
          let text = decoder.decode(r.bytes, { stream: true });
          if (start > 0 && lines.length === 2 && lines[0] === '' && lines[1] === '') {
            // Started mid-file: drop the partial first line.
            const nl = text.indexOf('\n');
            text = `… (${fmtBytes(start)} earlier not shown; download for all)\n` + (nl >= 0 ? text.slice(nl + 1) : text);
            lines = [''];
          }
          addText(text);
        }
      } while (again && alive);
    } catch (e) {
      if (alive) setText(logInfo, `log: ${e.message}`);
    } finally {
      fetching = false;
    }
  }

  function addText(text) {
    const parts = text.split('\n');
    lines[lines.length - 1] += parts[0];
    const added = parts.length - 1;
    for (let i = 1; i < parts.length; i++) lines.push(parts[i]);
    let trimmed = false;
    if (lines.length > MAX_LINES) {
      lines.splice(0, lines.length - MAX_LINES);
      trimmed = true;
    }
    if (!follow) {
      pendingNew += added;
      renderLogInfo();
      return;
    }
    if (search || trimmed || pre.childNodes.length > 5000) renderLog(true);
    else {
      pre.append(document.createTextNode(text));
      pre.scrollTop = pre.scrollHeight;
      renderLogInfo();
    }
  }

  function renderEmpty() {
    pre.dataset.empty = offset === 0 ? (job && WAITING.has(job.state) && job.state === 'queued' ? 'Nothing yet: the build has not started.' : 'No output yet.') : '';
  }

  function renderLogInfo() {
    renderEmpty();
    const n = lines.length - (lines[lines.length - 1] === '' ? 1 : 0);
    let s = `${n} lines, ${fmtBytes(offset)}`;
    if (!follow) s += pendingNew ? ` · paused, ${pendingNew} new lines` : ' · paused';
    if (search) s += ` · ${pre.dataset.matches || 0} matching lines`;
    setText(logInfo, s);
  }

  function renderLog() {
    clear(pre);
    if (!search) {
      pre.append(document.createTextNode(lines.join('\n')));
    } else {
      const q = search.toLowerCase();
      let n = 0;
      for (const line of lines) {
        const i = line.toLowerCase().indexOf(q);
        if (i < 0) continue;
        n++;
        pre.append(document.createTextNode(line.slice(0, i)), h('mark', {}, line.slice(i, i + q.length)), document.createTextNode(line.slice(i + q.length) + '\n'));
      }
      pre.dataset.matches = String(n);
      if (!n) pre.append(document.createTextNode(`No line contains "${search}".`));
    }
    if (follow) pre.scrollTop = pre.scrollHeight;
    renderLogInfo();
  }

  const poll = setInterval(() => {
    if (job && !FINAL.has(job.state)) fetchLog();
  }, 2000);

  reload();
  return {
    update(batch) {
      if (batch.resync) {
        reload();
        fetchLog();
        return;
      }
      for (const j of batch.jobs) if (String(j.id) === String(id)) setJob(j);
      if (batch.logs.some((l) => String(l.job) === String(id))) fetchLog();
    },
    unmount() {
      alive = false;
      clearInterval(poll);
    },
  };
}
