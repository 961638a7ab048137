/**
 * Prometheus metrics for the gateway, on its own prom-client Registry. Values are read on scrape from
 * backend.metrics() (plain numbers the forwarding path keeps) through collect() callbacks: nothing here runs
 * per packet. Per-user series are rebuilt on every scrape from the snapshot's user list, so a user the gateway
 * has evicted disappears from the output and cardinality stays bounded.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { AdminBackend, MetricsSnapshot } from '../admin/backend.js';
import type { AllocatorTrimStats } from '../gateway/allocator-trim.js';
import { DROP_REASONS } from '../gateway/drops.js';
import { END_REASONS, REJECT_REASONS } from '../gateway/session.js';
import { GUARD_CLOSE_REASONS } from '../transport/connection-guard.js';
import { registerFleetMetrics, type FleetMetricsSource } from './fleet.js';
import { H3_GUARD_REASONS } from '../transport/h3-session-guard.js';
import { HighWaterMarks } from './monotonic.js';
import { registerProcessMemoryMetrics } from './process-memory.js';

export interface MetricsExporterOptions {
  /** Also export prom-client's process metrics (CPU, memory, event loop lag, GC) and ours (process-memory.ts). Default true. */
  readonly defaultMetrics?: boolean;
  /** Upper bounds of the session duration histogram, seconds. */
  readonly durationBuckets?: readonly number[];
  /** The gateway's fleet parts (config `fleet`): link and lease metrics (fleet.ts); null or absent alone. */
  readonly fleet?: FleetMetricsSource | null;
  /** The allocator trimmer (config `memory.trim_after_freed`): its trims are counted; null or absent: none. */
  readonly trimmer?: { readonly stats: AllocatorTrimStats } | null;
}

/** 1 s … 7 days: sessions range from failed handshakes to week-long tunnels. */
export const DEFAULT_DURATION_BUCKETS: readonly number[] = [1, 10, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86_400, 3 * 86_400, 7 * 86_400];

type Labels<K extends string> = Partial<Record<K, string>>;

export class MetricsExporter {
  readonly registry = new Registry();
  private readonly backend: AdminBackend;
  private readonly unsubscribe: () => void;
  /** The snapshot shared by all collect() callbacks of one scrape (one backend.metrics() call per scrape). */
  private scrapeSnapshot: MetricsSnapshot | null = null;
  private scrapesInFlight = 0;

  constructor(backend: AdminBackend, options: MetricsExporterOptions = {}) {
    this.backend = backend;
    const registers = [this.registry];
    const snapshot = (): MetricsSnapshot => this.scrapeSnapshot ?? backend.metrics();

    new Gauge({
      name: 'quicgate_sessions_active',
      help: 'Live tunnel sessions.',
      registers,
      collect() {
        this.set(snapshot().activeSessions);
      },
    });
    monotonicCounter('quicgate_sessions_started_total', 'Sessions established since the gateway started.', [], registers, (s) => [
      [{}, s.sessionsStarted],
    ]);
    monotonicCounter('quicgate_sessions_ended_total', 'Sessions ended since the gateway started, by end reason.', ['reason'], registers, (s) =>
      withKnownKeys(END_REASONS, s.sessionsEnded).map(([reason, n]) => [{ reason }, n]),
    );
    monotonicCounter('quicgate_rejections_total', 'Session requests refused, by reason.', ['reason'], registers, (s) =>
      withKnownKeys(REJECT_REASONS, s.rejections).map(([reason, n]) => [{ reason }, n]),
    );
    monotonicCounter('quicgate_resume_refused_total', 'Resume claims that matched no live session of the user; a new session was opened.', [], registers, (s) => [
      [{}, s.resumeRefused],
    ]);
    monotonicCounter('quicgate_session_listener_errors_total', 'Session open/close listeners that threw (each is logged at error level).', [], registers, (s) => [
      [{}, s.listenerErrors],
    ]);
    monotonicCounter('quicgate_drops_total', 'Packets dropped by the forwarding path, by reason.', ['reason'], registers, (s) =>
      withKnownKeys(DROP_REASONS, s.drops).map(([reason, n]) => [{ reason }, n]),
    );
    monotonicCounter('quicgate_user_bytes_total', 'Tunnel bytes per user; in = client to gateway, out = gateway to client.', ['user', 'direction'], registers, (s) =>
      s.users.flatMap((u) => [
        [{ user: u.user, direction: 'in' }, u.bytesIn],
        [{ user: u.user, direction: 'out' }, u.bytesOut],
      ]),
    );
    monotonicCounter('quicgate_user_packets_total', 'Tunnel packets per user; in = client to gateway, out = gateway to client.', ['user', 'direction'], registers, (s) =>
      s.users.flatMap((u) => [
        [{ user: u.user, direction: 'in' }, u.packetsIn],
        [{ user: u.user, direction: 'out' }, u.packetsOut],
      ]),
    );
    labelledGauge('quicgate_user_quota_used_bytes', 'Bytes of the current quota period used, for users with a quota.', ['user'], registers, (s) =>
      s.users.flatMap((u) => (u.quotaUsed === null ? [] : [[{ user: u.user }, u.quotaUsed]])),
    );
    labelledGauge('quicgate_pool_free_addresses', 'Free tunnel addresses in the pool, per configured family.', ['family'], registers, (s) => {
      const rows: [Labels<'family'>, number][] = [];
      if (s.poolFree.ipv4 !== null) rows.push([{ family: 'ipv4' }, s.poolFree.ipv4]);
      if (s.poolFree.ipv6 !== null) rows.push([{ family: 'ipv6' }, s.poolFree.ipv6]);
      return rows;
    });
    labelledGauge('quicgate_sessions_by_transport', 'Live sessions by transport.', ['transport'], registers, (s) =>
      withKnownKeys(['h2', 'h3', 'quic'], s.sessionsByTransport).map(([transport, n]) => [{ transport }, n]),
    );
    new Gauge({
      name: 'quicgate_buckets_live',
      help: 'Token buckets in use (one per limited user with live sessions).',
      registers,
      collect() {
        this.set(snapshot().liveBuckets);
      },
    });
    new Gauge({
      name: 'quicgate_history_degraded',
      help: '1 while the session history database is failing or stalled (records are held in memory, bounded), else 0.',
      registers,
      collect() {
        this.set(snapshot().historyDegraded ? 1 : 0);
      },
    });
    new Gauge({
      name: 'quicgate_history_pending_records',
      help: 'History records waiting to be written.',
      registers,
      collect() {
        this.set(snapshot().historyPending);
      },
    });
    labelledGauge('quicgate_connections', 'Tunnel connections tracked by the connection guards: pending = no authenticated session (HTTP/2, native QUIC) or no session request (library HTTP/3) yet, open = all, with cut HTTP/3 ones.', ['state'], registers, (s) =>
      s.connections === null ? [] : [[{ state: 'pending' }, s.connections.pending], [{ state: 'open' }, s.connections.open]],
    );
    monotonicCounter('quicgate_connections_closed_total', 'Tunnel connections without a session closed or reset by the gateway, by reason.', ['reason'], registers, (s) =>
      s.connections === null ? [] : withKnownKeys(GUARD_CLOSE_REASONS, s.connections.closed).map(([reason, n]) => [{ reason }, n]),
    );
    new Gauge({
      name: 'quicgate_h3_connections_cut',
      help: 'Library HTTP/3 connections cut at connections.handshake_timeout without a session request: their datagrams are dropped until QUICHE has surely ended them; counted against connections.max_pending*.',
      registers,
      collect() {
        this.set(snapshot().connections?.h3Cut ?? 0);
      },
    });
    new Gauge({
      name: 'quicgate_h3_sessions_pending',
      help: 'HTTP/3 session requests without an established tunnel (credentials being checked, session or control stream coming up).',
      registers,
      collect() {
        this.set(snapshot().connections?.h3?.pending ?? 0);
      },
    });
    monotonicCounter('quicgate_h3_sessions_refused_total', 'HTTP/3 session requests refused or closed by the session guard, by reason.', ['reason'], registers, (s) =>
      s.connections?.h3 === undefined ? [] : withKnownKeys(H3_GUARD_REASONS, s.connections.h3.closed).map(([reason, n]) => [{ reason }, n]),
    );
    monotonicCounter(
      'quicgate_history_dropped_records_total',
      'History records dropped since start: the queue was full while the database failed or stalled, or the database refused the record.',
      [],
      registers,
      (s) => [[{}, s.historyDropped]],
    );
    monotonicCounter(
      'quicgate_history_worker_restarts_total',
      'History worker thread restarts since start (SQLite or PostgreSQL backend): the thread was lost (uncaught error, out of memory, terminated) and started again.',
      [],
      registers,
      (s) => [[{}, s.historyWorkerRestarts]],
    );

    // Config fleet only (no series without one).
    const fleet = (s: MetricsSnapshot, value: (f: NonNullable<MetricsSnapshot['fleetSessions']>) => number): [Labels<never>, number][] =>
      s.fleetSessions == null ? [] : [[{}, value(s.fleetSessions)]];
    labelledGauge('quicgate_fleet_sessions_degraded', 'Config fleet: 1 while session caps, lists and kills are local only (Redis unreachable or the lease not held).', [], registers, (s) =>
      fleet(s, (f) => (f.degraded ? 1 : 0)),
    );
    monotonicCounter('quicgate_fleet_local_only_admissions_total', 'Config fleet: sessions admitted on local caps only because the fleet could not be asked.', [], registers, (s) =>
      fleet(s, (f) => f.localOnlyAdmissions),
    );
    monotonicCounter('quicgate_fleet_session_resyncs_total', "Config fleet: re-registrations of this gateway's live sessions (after Redis returned).", [], registers, (s) =>
      fleet(s, (f) => f.resyncs),
    );
    monotonicCounter('quicgate_fleet_gateways_lost_total', 'Config fleet: gateways whose lease expired, found by this gateway.', [], registers, (s) =>
      fleet(s, (f) => f.gatewaysLost),
    );
    monotonicCounter('quicgate_fleet_routed_kills_served_total', 'Config fleet: kills other gateways routed to this one.', [], registers, (s) =>
      fleet(s, (f) => f.routedKillsServed),
    );
    monotonicCounter('quicgate_fleet_sessions_replaced_remote_total', "Config fleet: other gateways' sessions this one replaced (replace_oldest).", [], registers, (s) =>
      fleet(s, (f) => f.replacedRemote),
    );
    monotonicCounter('quicgate_fleet_malformed_total', 'Config fleet: malformed session records and control messages read from Redis and dropped.', [], registers, (s) =>
      fleet(s, (f) => f.malformed),
    );

    const durations = new Histogram({
      name: 'quicgate_session_duration_seconds',
      help: 'Duration of ended sessions.',
      buckets: [...(options.durationBuckets ?? DEFAULT_DURATION_BUCKETS)],
      registers,
    });
    const offEnded = backend.onSessionEnded((ended) => durations.observe(Math.max(0, ended.durationSeconds)));
    const offFleet = options.fleet ? registerFleetMetrics(this.registry, options.fleet) : () => undefined;
    this.unsubscribe = () => {
      offEnded();
      offFleet();
    };

    if (options.defaultMetrics ?? true) {
      collectDefaultMetrics({ register: this.registry });
      registerProcessMemoryMetrics(this.registry, options.trimmer ?? null);
    }

    // Helpers close over `snapshot`, so they live here rather than as module functions taking it around.
    function monotonicCounter<K extends string>(
      name: string,
      help: string,
      labelNames: readonly K[],
      registers: Registry[],
      rows: (s: MetricsSnapshot) => [Labels<K>, number][],
    ): void {
      const marks = new HighWaterMarks();
      new Counter<K>({
        name,
        help,
        labelNames,
        registers,
        collect() {
          // Rebuilt from scratch each scrape: series absent from the snapshot vanish.
          this.reset();
          marks.beginScrape();
          for (const [labels, value] of rows(snapshot())) {
            this.inc(labels, marks.hold(seriesKey(labels), value));
          }
          marks.endScrape();
        },
      });
    }

    function labelledGauge<K extends string>(
      name: string,
      help: string,
      labelNames: readonly K[],
      registers: Registry[],
      rows: (s: MetricsSnapshot) => [Labels<K>, number][],
    ): void {
      new Gauge<K>({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          for (const [labels, value] of rows(snapshot())) this.set(labels, value);
        },
      });
    }
  }

  /** Content-Type of render()'s output (Prometheus text format 0.0.4). */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus text exposition, computed now from one backend.metrics() snapshot. */
  async render(): Promise<string> {
    this.scrapeSnapshot = this.backend.metrics();
    this.scrapesInFlight++;
    try {
      return await this.registry.metrics();
    } finally {
      if (--this.scrapesInFlight === 0) this.scrapeSnapshot = null;
    }
  }

  /** Stops observing ended sessions. The registry stays readable. */
  close(): void {
    this.unsubscribe();
  }
}

/** Every known key (so dashboards see zeros rather than gaps), plus any extra key the snapshot carries. */
function withKnownKeys(known: readonly string[], values: Readonly<Record<string, number | undefined>>): [string, number][] {
  const keys = new Set<string>(known);
  for (const key of Object.keys(values)) keys.add(key);
  return [...keys].map((key) => [key, values[key] ?? 0]);
}

function seriesKey(labels: Readonly<Record<string, string | undefined>>): string {
  return JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)));
}
