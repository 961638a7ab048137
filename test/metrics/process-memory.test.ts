import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { mallocStats } from '../../src/gateway/native-memory.js';
import { registerProcessMemoryMetrics } from '../../src/metrics/process-memory.js';
import { MetricsExporter } from '../../src/metrics/exporter.js';
import { FakeAdminBackend } from '../support/fake-admin-backend.js';

function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? NaN : Number(line.slice(series.length + 1));
}

describe('process memory metrics', () => {
  it('exports malloc in use / retained / arenas and resident anon / file from the scrape', async () => {
    const registry = new Registry();
    registerProcessMemoryMetrics(registry, null);
    const before = mallocStats()!;
    const text = await registry.metrics();
    const inUse = sample(text, 'quicgate_process_malloc_inuse_bytes');
    // The scrape's own allocations move it a little; the order of magnitude is the process's.
    expect(inUse).toBeGreaterThan(before.inUse / 2);
    expect(inUse).toBeLessThan(before.inUse * 2 + 16 * 1024 * 1024);
    expect(sample(text, 'quicgate_process_malloc_retained_bytes')).toBeGreaterThanOrEqual(0);
    expect(sample(text, 'quicgate_process_malloc_arenas')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'quicgate_process_resident_bytes{kind="anon"}')).toBeGreaterThan(0);
    expect(sample(text, 'quicgate_process_resident_bytes{kind="file"}')).toBeGreaterThan(0);
  });

  it('comes with the default process metrics of the exporter, not without them', async () => {
    const backend = new FakeAdminBackend();
    const withDefaults = new MetricsExporter(backend);
    const without = new MetricsExporter(backend, { defaultMetrics: false });
    try {
      expect(await withDefaults.render()).toMatch(/^quicgate_process_malloc_inuse_bytes \d+$/m);
      expect(await without.render()).not.toMatch(/quicgate_process_malloc/);
    } finally {
      withDefaults.close();
      without.close();
    }
  });
});
