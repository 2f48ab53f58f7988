// forges.js - a banner while commit-status reports to a forge are late
// (GET /api/v1/statuses; nothing is shown when kiln reports to no forge).
import { h, fmtAgo } from './dom.js';
import * as api from './api.js';

export function watchForges(banner) {
  async function check() {
    let r;
    try {
      r = await api.get('/statuses');
    } catch (e) {
      if (e.status === 404) return; // statuses not configured: stop asking
      setTimeout(check, 30000);
      return;
    }
    const late = api.listOf(r, 'forges').filter((f) => f.late);
    banner.replaceChildren(...late.map((f) => h('p', { class: 'callout' },
      `Commit statuses to ${f.forge} ${f.repo} are late: ${f.queued} report${f.queued === 1 ? '' : 's'} waiting, failing since ${fmtAgo(f.failing_since)}${f.last_error ? ` (${f.last_error})` : ''}; kiln keeps retrying.`)));
    banner.hidden = late.length === 0;
    setTimeout(check, 15000);
  }
  check();
}
