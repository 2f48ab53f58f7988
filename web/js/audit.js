// audit.js - the audit log (GET /api/v1/audit, admins only): every request
// that changed state, or tried to: who (role and token id), from where,
// what (method and path), when, and the outcome. Newest first, 100 at a
// time; "Older" pages back with next_before_id. probe() tells the shell
// whether the current token may read it, so only admins see the nav link.
import { h, clear, fmtTime } from './dom.js';
import * as api from './api.js';

// 1 when the token reads the audit log (an admin), 0 otherwise.
export async function probe() {
  if (!api.getToken()) return false;
  try {
    await api.get('/audit', { limit: 1 });
    return true;
  } catch {
    return false;
  }
}

function row(a) {
  const ok = a.outcome === 'allowed';
  return h('tr', { 'data-id': String(a.id) },
    h('td', { class: 'c-num' }, String(a.id)),
    h('td', { class: 'c-num' }, fmtTime(a.at)),
    h('td', {}, String(a.role || '–'), a.token_id === null || a.token_id === undefined ? '' : h('span', { class: 'muted' }, ` #${a.token_id}`)),
    h('td', { class: 'mono' }, String(a.peer || '–')),
    h('td', { class: 'mono' }, `${a.method} ${a.path}`),
    h('td', {}, h('span', { class: `badge ${ok ? 'st-ok' : 'st-bad'}` }, ok ? 'allowed' : `refused ${a.outcome}`)));
}

export function mount(root) {
  const body = h('tbody');
  const table = h('table', { class: 'grid-table', id: 'audit-table' },
    h('thead', {}, h('tr', {}, ['#', 'When', 'Who', 'From', 'Request', 'Outcome'].map((x) => h('th', { scope: 'col' }, x)))), body);
  const empty = h('p', { class: 'empty', hidden: true }, 'No state-changing request yet.');
  const summary = h('p', { class: 'lead' });
  const errBox = h('p', { class: 'error', role: 'alert', hidden: true });
  const older = h('button', { type: 'button', class: 'btn', id: 'audit-older', hidden: true }, 'Older');
  const refresh = h('button', { type: 'button', class: 'btn', id: 'audit-refresh' }, 'Refresh');
  root.append(h('div', { class: 'view-head' }, h('h1', {}, 'Audit log'), summary), errBox,
    h('section', { class: 'card' }, h('div', { class: 'table-wrap' }, table), empty, h('div', { class: 'row' }, refresh, older)));

  let seq = 0;
  let next = null;
  let shown = 0;
  async function load(before) {
    const my = ++seq;
    try {
      const r = await api.get('/audit', { limit: 100, before_id: before || '' });
      if (my !== seq) return;
      const items = api.listOf(r, 'audit');
      if (!before) {
        clear(body);
        shown = 0;
      }
      for (const a of items) body.append(row(a));
      shown += items.length;
      next = r.next_before_id || null;
      older.hidden = !next;
      empty.hidden = shown !== 0;
      table.hidden = shown === 0;
      const refused = body.querySelectorAll('.st-bad').length;
      summary.textContent = `${shown} request${shown === 1 ? '' : 's'} shown${refused ? `, ${refused} refused` : ''}`;
      errBox.hidden = true;
    } catch (e) {
      errBox.hidden = false;
      errBox.textContent = `Could not load the audit log (admins only): ${e.message}`;
    }
  }
  older.addEventListener('click', () => next && load(next));
  refresh.addEventListener('click', () => load(null));
  load(null);
  return {
    update() {
      // Audit rows are not events; the Refresh button reloads.
    },
    unmount() {
      seq++;
    },
  };
}
