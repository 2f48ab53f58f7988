// stats.js - estimates from history: how long a build of this variant (or
// recipe, or anything) took before, so a running build gets an ETA and the
// queue a "done in about" figure. Medians, because one stuck build should not
// move every estimate.
import * as api from './api.js';

function median(a) {
  if (!a.length) return null;
  const s = [...a].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export class History {
  constructor() {
    this.byName = new Map();
    this.byRecipe = new Map();
    this.all = [];
    this.loaded = false;
  }

  add(job) {
    if (job.state !== 'succeeded' && job.state !== 'published') return;
    if (!job.started_at || !job.finished_at) return;
    const d = job.finished_at - job.started_at;
    if (!(d > 0)) return;
    const push = (m, k) => {
      if (!k) return;
      let a = m.get(k);
      if (!a) m.set(k, (a = []));
      if (a.length < 50) a.push(d);
    };
    push(this.byName, job.name);
    push(this.byRecipe, job.recipe || '(ad-hoc)');
    if (this.all.length < 2000) this.all.push(d);
  }

  async load(params) {
    try {
      const r = await api.get('/jobs', { ...params, state: 'succeeded', limit: 500 });
      for (const j of api.listOf(r, 'jobs')) this.add(j);
    } catch {
      /* estimates stay unknown */
    }
    this.loaded = true;
  }

  estimate(job) {
    if (job.est_duration_s > 0) return job.est_duration_s;
    const n = this.byName.get(job.name);
    if (n && n.length) return median(n);
    const r = this.byRecipe.get(job.recipe || '(ad-hoc)');
    if (r && r.length) return median(r);
    if (job.resources && job.resources.est_duration_s > 0) return job.resources.est_duration_s;
    return median(this.all);
  }
}
