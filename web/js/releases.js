// releases.js - releases (every variant of one commit, published at once):
// their status, and for an unfinished one the variants that hold it and why.
import { h, clear, fmtTime } from './dom.js';
import * as api from './api.js';

const STATUS = {
  complete: ['✔ published', 'st-ok'],
  pending: ['… building', 'st-wait'],
  held: ['✖ held', 'st-bad'],
  superseded: ['– superseded', 'st-off'],
};

function holders(r, hashFor) {
  if (!r.held_by || !r.held_by.length) return r.status === 'superseded' && r.superseded_by ? `by release ${r.superseded_by} (a newer commit)` : '–';
  return h('ul', { class: 'plain' }, r.held_by.map((v) => h('li', {},
    h('a', { href: hashFor('build', v.job) }, `${v.name}`),
    ` ${v.state}${v.failed_stage ? ' at ' + v.failed_stage : ''}: `,
    h('span', { class: 'muted' }, String(v.reason || 'no reason given')))));
}

export function mount(root, ctx) {
  const body = h('tbody');
  const table = h('table', { class: 'grid-table' },
    h('thead', {}, h('tr', {}, ['Release', 'Status', 'Branch', 'Commit', 'Passed', 'Held by', 'Opened', 'Published'].map((x) => h('th', { scope: 'col' }, x)))), body);
  const empty = h('p', { class: 'empty', hidden: true }, 'No releases yet: a recipe or a tracked branch with "publish: release" makes one per commit.');
  const summary = h('p', { class: 'lead' });
  const errBox = h('p', { class: 'error', role: 'alert', hidden: true });
  root.append(h('div', { class: 'view-head' }, h('h1', {}, 'Releases'), summary), errBox, h('section', { class: 'card' }, h('div', { class: 'table-wrap' }, table), empty));

  let seq = 0;
  let timer = null;
  async function load() {
    const my = ++seq;
    try {
      const r = await api.get('/releases', { limit: 100 });
      if (my !== seq) return;
      const items = api.listOf(r, 'releases');
      clear(body);
      for (const x of items) {
        const [label, cls] = STATUS[x.status] || [x.status, 'st-off'];
        body.append(h('tr', {},
          h('td', { class: 'c-num' }, String(x.id)),
          h('td', {}, h('span', { class: `badge ${cls}` }, label)),
          h('td', {}, String(x.branch || '–')),
          h('td', { class: 'mono' }, String(x.commit || '').slice(0, 12)),
          h('td', { class: 'c-num' }, `${x.variants_passed}/${x.variants_total}`),
          h('td', {}, holders(x, ctx.hashFor)),
          h('td', { class: 'c-num' }, fmtTime(x.created_at)),
          h('td', { class: 'c-num' }, x.status === 'complete' ? fmtTime(x.completed_at) : '–')));
      }
      empty.hidden = items.length !== 0;
      table.hidden = items.length === 0;
      const held = items.filter((x) => x.status === 'held').length;
      summary.textContent = `${items.length} release${items.length === 1 ? '' : 's'}${held ? `, ${held} held` : ''}`;
      errBox.hidden = true;
    } catch (e) {
      errBox.hidden = false;
      errBox.textContent = `Could not load the releases: ${e.message}`;
    }
  }
  load();
  return {
    update(batch) {
      // Job changes move releases; reload at most once a second.
      if (!(batch.jobs.length || batch.catalog.length || batch.resync) || timer) return;
      timer = setTimeout(() => { timer = null; load(); }, 1000);
    },
    unmount() {
      seq++;
      if (timer) clearTimeout(timer);
    },
  };
}
