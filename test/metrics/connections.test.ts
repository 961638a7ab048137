/**
 * The connection guard's figures on /metrics: quicgate_connections{state} and
 * quicgate_connections_closed_total{reason} (every reason, 0 when none), absent without a guard.
 */
import { describe, expect, it } from 'vitest';
import { MetricsExporter } from '../../src/metrics/exporter.js';
import { GUARD_CLOSE_REASONS } from '../../src/transport/connection-guard.js';
import { FakeAdminBackend } from '../support/fake-admin-backend.js';

describe('connection metrics', () => {
  it('exports pending/open and closed by reason', async () => {
    const backend = new FakeAdminBackend();
    const exporter = new MetricsExporter(backend, { defaultMetrics: false });
    try {
      expect(await exporter.render()).not.toMatch(/^quicgate_connections(_closed_total)?\{/m);
      const closed = Object.fromEntries(GUARD_CLOSE_REASONS.map((r) => [r, 0])) as Record<(typeof GUARD_CLOSE_REASONS)[number], number>;
      backend.connections = { pending: 3, open: 5, closed: { ...closed, limit_source: 1400, connect_timeout: 60 } };
      const text = await exporter.render();
      expect(text).toMatch(/^quicgate_connections\{state="pending"\} 3$/m);
      expect(text).toMatch(/^quicgate_connections\{state="open"\} 5$/m);
      expect(text).toMatch(/^quicgate_connections_closed_total\{reason="limit_source"\} 1400$/m);
      expect(text).toMatch(/^quicgate_connections_closed_total\{reason="connect_timeout"\} 60$/m);
      for (const reason of GUARD_CLOSE_REASONS) expect(text).toContain(`quicgate_connections_closed_total{reason="${reason}"}`);
    } finally {
      exporter.close();
    }
  });
});
