// table.js - a keyed table that updates rows in place. A row is rebuilt
// cell by cell only when that cell's key changes, so a live update does not
// steal focus from a link the user is on and a burst of events touches
// only the cells that changed.
import { h, clear } from './dom.js';

export class KeyedTable {
  // columns: [{label, cls, key(job, now) -> string, build(job, now) -> Node|string}]
  constructor(columns, opts = {}) {
    this.columns = columns;
    this.rows = new Map(); // id -> {tr, keys[]}
    this.tbody = h('tbody');
    this.caption = opts.caption ? h('caption', { class: 'sr-only' }, opts.caption) : null;
    this.table = h('table', { class: `grid-table ${opts.cls || ''}` },
      this.caption,
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.cls || '' }, c.label)))),
      this.tbody);
    this.empty = h('p', { class: 'empty' }, opts.empty || 'Nothing here.');
    this.el = h('div', { class: 'table-wrap' }, this.table, this.empty);
  }

  set(jobs, now = Date.now() / 1000) {
    const seen = new Set();
    let prev = null;
    for (const job of jobs) {
      seen.add(job.id);
      let r = this.rows.get(job.id);
      if (!r) {
        r = { tr: h('tr', { dataset: { id: String(job.id) } }, this.columns.map((c) => h('td', { class: c.cls || '' }))), keys: [] };
        this.rows.set(job.id, r);
      }
      r.tr.dataset.state = String(job.state || '');
      this.columns.forEach((c, i) => {
        const k = c.key(job, now);
        if (r.keys[i] === k) return;
        r.keys[i] = k;
        const td = r.tr.children[i];
        clear(td);
        const v = c.build(job, now);
        td.append(v instanceof Node ? v : document.createTextNode(v === null || v === undefined ? '' : String(v)));
      });
      // Keep DOM order equal to jobs order, moving only what is out of place.
      const want = prev ? prev.nextSibling : this.tbody.firstChild;
      if (want !== r.tr) this.tbody.insertBefore(r.tr, want);
      prev = r.tr;
    }
    for (const [id, r] of this.rows) {
      if (!seen.has(id)) {
        r.tr.remove();
        this.rows.delete(id);
      }
    }
    this.table.hidden = jobs.length === 0;
    this.empty.hidden = jobs.length !== 0;
  }
}
