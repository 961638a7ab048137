/** The admin listener's token attempts, read on scrape from its AdminAuthThrottle (src/admin/auth-throttle.ts). */
import { Counter, type Registry } from 'prom-client';
import type { AdminAuthStats } from '../admin/auth-throttle.js';

export function registerAdminAuthMetrics(registry: Registry, stats: () => AdminAuthStats): () => void {
  const name = 'quicgate_admin_auth_refused_total';
  // One admin listener per gateway; a second one on the same registry (tests) takes the series over.
  registry.removeSingleMetric(name);
  const counter = new Counter({
    name,
    help: 'Admin API and console requests refused for their token: wrong_token (401), throttled (429 before the token was compared).',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      const s = stats();
      this.reset();
      this.inc({ reason: 'wrong_token' }, s.wrongToken);
      this.inc({ reason: 'throttled' }, s.throttled);
    },
  });
  return () => {
    if (registry.getSingleMetric(name) === counter) registry.removeSingleMetric(name);
  };
}
