// charts.js - the Charts view, drawn as SVG by the page itself: queue length
// and running builds over the last hours, throughput per interval (succeeded
// and failed), and a histogram of build durations. Data: the most recent jobs
// from GET /jobs (up to 3,000), so no extra server endpoint is needed.
import { h, s, clear, fmtDuration } from './dom.js';
import * as api from './api.js';

const W = 640;
const H = 220;
const M = { l: 44, r: 12, t: 12, b: 28 };

function axisTime(g, t0, t1, x) {
  const span = t1 - t0;
  const step = span <= 3600 * 2 ? 900 : span <= 3600 * 8 ? 3600 : 3600 * 4;
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
    const d = new Date(t * 1000);
    const X = x(t);
    g.append(s('line', { x1: X, x2: X, y1: M.t, y2: H - M.b, class: 'gridline' }));
    g.append(s('text', { x: X, y: H - 8, class: 'axis', 'text-anchor': 'middle' }, `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`));
  }
}
function axisY(g, max, y, fmt = String) {
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    const Y = y(v);
    g.append(s('line', { x1: M.l, x2: W - M.r, y1: Y, y2: Y, class: 'gridline' }));
    g.append(s('text', { x: M.l - 6, y: Y + 4, class: 'axis', 'text-anchor': 'end' }, fmt(Math.round(v))));
  }
}
// An axis maximum of 4 round steps (1, 2 or 5 x 10^k each) covering v.
function niceMax(v) {
  if (v <= 4) return 4;
  const raw = v / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return 4 * m * p;
  return v;
}
function svgBox(label) {
  return s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': label, preserveAspectRatio: 'xMidYMid meet' }, s('title', {}, label));
}
function legend(items) {
  return h('ul', { class: 'legend' }, items.map(([cls, text]) => h('li', {}, h('span', { class: `swatch ${cls}`, 'aria-hidden': 'true' }), text)));
}

export function mount(root, ctx, arg, params) {
  let hours = Number(params.get('hours')) || 6;
  const body = h('div', { class: 'charts' });
  const pick = h('div', { class: 'tabs', role: 'group', 'aria-label': 'Time range' });
  for (const hh of [1, 6, 24]) {
    const b = h('button', { type: 'button', class: `btn ${hh === hours ? 'on' : ''}`, 'aria-pressed': String(hh === hours), id: `range-${hh}` }, `${hh} h`);
    b.addEventListener('click', () => {
      hours = hh;
      ctx.setParams({ hours: String(hh) });
      for (const x of pick.children) {
        x.classList.toggle('on', x === b);
        x.setAttribute('aria-pressed', String(x === b));
      }
      draw();
    });
    pick.append(b);
  }
  const note = h('p', { class: 'lead' });
  root.append(h('div', { class: 'view-head' }, h('h1', {}, 'Charts'), pick), note, body);
  let jobs = [];
  let timer = 0;

  async function load() {
    const out = [];
    let before;
    try {
      for (let i = 0; i < 3; i++) {
        const r = await api.get('/jobs', { limit: 1000, before_id: before });
        const list = api.listOf(r, 'jobs');
        out.push(...list);
        before = r.next_before_id;
        if (!before || !list.length) break;
        const oldest = list[list.length - 1].created_at;
        if (oldest && oldest < Date.now() / 1000 - 24 * 3600) break;
      }
    } catch (e) {
      note.textContent = `Could not load jobs: ${e.message}`;
    }
    jobs = out;
    draw();
  }

  function draw() {
    const t1 = Date.now() / 1000;
    const t0 = t1 - hours * 3600;
    clear(body);
    note.textContent = `From the ${jobs.length} most recent jobs.`;
    const x = (t) => M.l + ((t - t0) / (t1 - t0)) * (W - M.l - M.r);

    // 1. queue length and running over time
    const N = 90;
    const qs = [];
    const rs = [];
    for (let i = 0; i <= N; i++) {
      const t = t0 + ((t1 - t0) * i) / N;
      let q = 0;
      let r = 0;
      for (const j of jobs) {
        if (!j.created_at || j.created_at > t) continue;
        if (j.finished_at && j.finished_at <= t) continue;
        if (j.started_at && j.started_at <= t) r++;
        else q++;
      }
      qs.push([t, q]);
      rs.push([t, r]);
    }
    const maxQ = niceMax(Math.max(1, ...qs.map((p) => p[1]), ...rs.map((p) => p[1])));
    const y = (v) => H - M.b - (v / maxQ) * (H - M.t - M.b);
    const c1 = svgBox(`Queue length and running builds over the last ${hours} hours; now ${qs[N][1]} waiting and ${rs[N][1]} running`);
    axisY(c1, maxQ, y);
    axisTime(c1, t0, t1, x);
    const line = (pts, cls) => s('polyline', { points: pts.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' '), class: cls });
    const area = s('polygon', { points: `${x(t0)},${y(0)} ` + qs.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ') + ` ${x(t1)},${y(0)}`, class: 'area-wait' });
    c1.append(area, line(qs, 'line-wait'), line(rs, 'line-run'));
    body.append(h('section', { class: 'card' }, h('h2', {}, 'Queue length'), legend([['sw-wait', 'waiting'], ['sw-run', 'running']]), c1));

    // 2. throughput per bucket
    const B = hours <= 1 ? 12 : hours <= 6 ? 12 : 24;
    const bw = (t1 - t0) / B;
    const ok = new Array(B).fill(0);
    const bad = new Array(B).fill(0);
    for (const j of jobs) {
      if (!j.finished_at || j.finished_at < t0) continue;
      const b = Math.min(B - 1, Math.floor((j.finished_at - t0) / bw));
      if (j.state === 'succeeded' || j.state === 'published') ok[b]++;
      else if (j.state === 'failed') bad[b]++;
    }
    const maxT = niceMax(Math.max(1, ...ok.map((v, i) => v + bad[i])));
    const y2 = (v) => H - M.b - (v / maxT) * (H - M.t - M.b);
    const total = ok.reduce((a, b) => a + b, 0);
    const c2 = svgBox(`Finished builds per ${fmtDuration(bw)}: ${total} succeeded and ${bad.reduce((a, b) => a + b, 0)} failed in the last ${hours} hours`);
    axisY(c2, maxT, y2);
    axisTime(c2, t0, t1, x);
    for (let i = 0; i < B; i++) {
      const X = x(t0 + i * bw) + 2;
      const w = x(t0 + (i + 1) * bw) - x(t0 + i * bw) - 4;
      if (ok[i]) c2.append(s('rect', { x: X, y: y2(ok[i]), width: w, height: y2(0) - y2(ok[i]), class: 'bar-ok' }, s('title', {}, `${ok[i]} succeeded`)));
      if (bad[i]) c2.append(s('rect', { x: X, y: y2(ok[i] + bad[i]), width: w, height: y2(ok[i]) - y2(ok[i] + bad[i]), class: 'bar-bad' }, s('title', {}, `${bad[i]} failed`)));
    }
    body.append(h('section', { class: 'card' }, h('h2', {}, `Throughput (per ${fmtDuration(bw).replace(/ 00s$/, '')})`), legend([['sw-ok', 'succeeded'], ['sw-bad', 'failed']]), c2));

    // 3. build durations histogram
    const ds = jobs.filter((j) => j.started_at && j.finished_at && (j.state === 'succeeded' || j.state === 'published')).map((j) => j.finished_at - j.started_at).sort((a, b) => a - b);
    const c3 = svgBox(ds.length ? `Durations of ${ds.length} successful builds; median ${fmtDuration(ds[ds.length >> 1])}` : 'No finished builds yet');
    if (ds.length) {
      const maxD = ds[ds.length - 1] || 1;
      const nb = 16;
      const bins = new Array(nb).fill(0);
      for (const d of ds) bins[Math.min(nb - 1, Math.floor((d / maxD) * nb))]++;
      const maxB = niceMax(Math.max(...bins));
      const y3 = (v) => H - M.b - (v / maxB) * (H - M.t - M.b);
      const x3 = (d) => M.l + (d / maxD) * (W - M.l - M.r);
      axisY(c3, maxB, y3);
      for (let i = 0; i < nb; i++) {
        const X = x3((i * maxD) / nb) + 1;
        const w = x3(((i + 1) * maxD) / nb) - x3((i * maxD) / nb) - 2;
        if (bins[i]) c3.append(s('rect', { x: X, y: y3(bins[i]), width: w, height: y3(0) - y3(bins[i]), class: 'bar-run' }, s('title', {}, `${bins[i]} builds of ${fmtDuration((i * maxD) / nb)}–${fmtDuration(((i + 1) * maxD) / nb)}`)));
      }
      for (let i = 0; i <= 4; i++) {
        const d = (maxD * i) / 4;
        c3.append(s('text', { x: x3(d), y: H - 8, class: 'axis', 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, fmtDuration(d)));
      }
      const med = ds[ds.length >> 1];
      c3.append(s('line', { x1: x3(med), x2: x3(med), y1: M.t, y2: H - M.b, class: 'median' }), s('text', { x: x3(med) + 4, y: M.t + 12, class: 'axis' }, `median ${fmtDuration(med)}`));
    }
    body.append(h('section', { class: 'card' }, h('h2', {}, 'Build durations'), c3));
  }

  load();
  const refresh = setInterval(load, 60000);
  return {
    update(batch) {
      if (!batch.jobs.length && !batch.resync) return;
      const byId = new Map(jobs.map((j) => [j.id, j]));
      for (const j of batch.jobs) byId.set(j.id, j);
      jobs = [...byId.values()].sort((a, b) => b.id - a.id);
      clearTimeout(timer);
      timer = setTimeout(draw, 2000);
    },
    unmount() {
      clearInterval(refresh);
      clearTimeout(timer);
    },
  };
}
