import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MetricsExporter } from '../../src/metrics/exporter.js';
import { FakeAdminBackend } from '../support/fake-admin-backend.js';

/** Parses Prometheus text into "name{labels}" -> value (labels as printed by prom-client). */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

function seriesOf(all: Map<string, number>, name: string): string[] {
  return [...all.keys()].filter((k) => k === name || k.startsWith(`${name}{`));
}

let backend: FakeAdminBackend;
let exporter: MetricsExporter;

beforeEach(() => {
  backend = new FakeAdminBackend();
  backend.addUser('alice', { bandwidth: 125_000 });
  backend.addUser('bob');
  backend.addSession('a1', 'alice', { transport: 'h3', bytesIn: 100, bytesOut: 200, packetsIn: 1, packetsOut: 2 });
  backend.addSession('a2', 'alice', { transport: 'h2', bytesIn: 1000, bytesOut: 2000, packetsIn: 10, packetsOut: 20 });
  backend.addSession('b1', 'bob', { transport: 'h2', bytesIn: 7, bytesOut: 9, packetsIn: 3, packetsOut: 4 });
  backend.trafficOf('alice').quotaUsed = 5_000_000;
  backend.rejections.auth_failed = 4;
  backend.rejections.user_limit = 1;
  backend.drops = { rate_limit: 17, queue_full: 2 };
  backend.poolFree = { ipv4: 65_530, ipv6: 1_000_000 };
  backend.historyPending = 12;
  exporter = new MetricsExporter(backend, { defaultMetrics: false });
});

afterEach(() => exporter.close());

describe('MetricsExporter', () => {
  it('exports every gateway metric with the snapshot values', async () => {
    backend.endSession('b1', 'idle_timeout', 30);
    const text = await exporter.render();
    const s = samples(text);

    expect(s.get('quicgate_sessions_active')).toBe(2);
    expect(s.get('quicgate_sessions_started_total')).toBe(3);
    expect(s.get('quicgate_sessions_ended_total{reason="idle_timeout"}')).toBe(1);
    expect(s.get('quicgate_sessions_ended_total{reason="admin_kill"}')).toBe(0);
    expect(s.get('quicgate_rejections_total{reason="auth_failed"}')).toBe(4);
    expect(s.get('quicgate_rejections_total{reason="user_limit"}')).toBe(1);
    expect(s.get('quicgate_rejections_total{reason="pool_exhausted"}')).toBe(0);
    expect(s.get('quicgate_drops_total{reason="rate_limit"}')).toBe(17);
    expect(s.get('quicgate_drops_total{reason="queue_full"}')).toBe(2);
    expect(s.get('quicgate_drops_total{reason="spoofed"}')).toBe(0);
    expect(s.get('quicgate_pool_free_addresses{family="ipv4"}')).toBe(65_530);
    expect(s.get('quicgate_pool_free_addresses{family="ipv6"}')).toBe(1_000_000);
    expect(s.get('quicgate_buckets_live')).toBe(1);
    expect(s.get('quicgate_sessions_by_transport{transport="h3"}')).toBe(1);
    expect(s.get('quicgate_sessions_by_transport{transport="h2"}')).toBe(1);
    expect(s.get('quicgate_user_bytes_total{user="alice",direction="in"}')).toBe(1100);
    expect(s.get('quicgate_user_bytes_total{user="alice",direction="out"}')).toBe(2200);
    expect(s.get('quicgate_user_bytes_total{user="bob",direction="in"}')).toBe(7);
    expect(s.get('quicgate_user_packets_total{user="alice",direction="in"}')).toBe(11);
    expect(s.get('quicgate_user_packets_total{user="bob",direction="out"}')).toBe(4);
    expect(s.get('quicgate_user_quota_used_bytes{user="alice"}')).toBe(5_000_000);
    // No quota, no series.
    expect(s.has('quicgate_user_quota_used_bytes{user="bob"}')).toBe(false);
    expect(s.get('quicgate_history_degraded')).toBe(0);
    expect(s.get('quicgate_history_pending_records')).toBe(12);
    expect(s.get('quicgate_session_duration_seconds_count')).toBe(1);
    expect(s.get('quicgate_session_duration_seconds_sum')).toBe(30);
    expect(s.get('quicgate_session_duration_seconds_bucket{le="10"}')).toBe(0);
    expect(s.get('quicgate_session_duration_seconds_bucket{le="60"}')).toBe(1);

    expect(text).toContain('# TYPE quicgate_user_bytes_total counter');
    expect(text).toContain('# TYPE quicgate_sessions_active gauge');
    expect(text).toContain('# TYPE quicgate_session_duration_seconds histogram');
  });

  it('leaves out a pool family that is not configured and reports history trouble', async () => {
    backend.poolFree = { ipv4: 10, ipv6: null };
    backend.historyDegraded = true;
    const s = samples(await exporter.render());
    expect(seriesOf(s, 'quicgate_pool_free_addresses')).toEqual(['quicgate_pool_free_addresses{family="ipv4"}']);
    expect(s.get('quicgate_history_degraded')).toBe(1);
  });

  it("removes a user's series once the gateway no longer lists the user", async () => {
    backend.trafficOf('bob').quotaUsed = 123;
    backend.endSession('b1', 'client_closed');
    let s = samples(await exporter.render());
    // Ended but not yet evicted: still there, with its final totals.
    expect(s.get('quicgate_user_bytes_total{user="bob",direction="in"}')).toBe(7);
    expect(s.get('quicgate_user_packets_total{user="bob",direction="out"}')).toBe(4);
    expect(s.get('quicgate_user_quota_used_bytes{user="bob"}')).toBe(123);

    backend.evictUser('bob');
    s = samples(await exporter.render());
    for (const name of ['quicgate_user_bytes_total', 'quicgate_user_packets_total', 'quicgate_user_quota_used_bytes']) {
      expect(seriesOf(s, name).filter((k) => k.includes('user="bob"'))).toEqual([]);
    }
    expect(s.get('quicgate_user_bytes_total{user="alice",direction="in"}')).toBe(1100);
  });

  it('keeps per-user counters monotonic while listed, and starts afresh after eviction', async () => {
    const key = 'quicgate_user_bytes_total{user="bob",direction="out"}';
    expect(samples(await exporter.render()).get(key)).toBe(9);

    backend.trafficOf('bob').bytesOut = 5; // a dip in the gateway's sum must not read as a counter reset
    expect(samples(await exporter.render()).get(key)).toBe(9);
    backend.trafficOf('bob').bytesOut = 50;
    expect(samples(await exporter.render()).get(key)).toBe(50);

    backend.evictUser('bob');
    expect(samples(await exporter.render()).has(key)).toBe(false);
    backend.addSession('b2', 'bob', { bytesOut: 3 });
    expect(samples(await exporter.render()).get(key)).toBe(3);
  });

  it('takes one backend snapshot per scrape', async () => {
    let calls = 0;
    const original = backend.metrics.bind(backend);
    backend.metrics = () => {
      calls++;
      return original();
    };
    await exporter.render();
    expect(calls).toBe(1);
    await Promise.all([exporter.render(), exporter.render()]);
    expect(calls).toBe(3);
  });

  it('stops observing ended sessions after close()', async () => {
    expect(backend.endListenerCount).toBe(1);
    exporter.close();
    expect(backend.endListenerCount).toBe(0);
    backend.endSession('a1', 'client_closed', 5);
    expect(samples(await exporter.render()).get('quicgate_session_duration_seconds_count')).toBe(0);
  });

  it('uses its own registry, with process metrics when asked', async () => {
    const withDefaults = new MetricsExporter(backend);
    try {
      const text = await withDefaults.render();
      expect(text).toContain('process_cpu_user_seconds_total');
      expect(text).toContain('nodejs_eventloop_lag_seconds');
      expect(text).toContain('quicgate_sessions_active 3');
      expect(await exporter.render()).not.toContain('process_cpu_user_seconds_total');
    } finally {
      withDefaults.close();
    }
  });
});
