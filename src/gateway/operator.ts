/**
 * The operator surface of a running gateway, wired in one call:
 *
 *   history (config.history.enabled; cannot open ─► logged, run without it, health degraded)
 *     ─► recorder (session starts/ends/rejections, live counters per flush)
 *   quota enforcer (Clock interval) ─► SessionManager admission check
 *   allocator trimmer (config.memory.trim_after_freed; Clock interval: malloc_trim after a flood subsides)
 *   GatewayBackend ─► MetricsExporter ─► admin HTTP server (only with admin.token)
 *
 * stop(): admin server closed, gateway stopped (its sessions end and are recorded), timers cancelled, then the
 * history flushed and closed, in that order.
 */
import type { Logger } from 'pino';
import type { ReloadResult } from '../admin/backend.js';
import { startAdminServer, type AdminServer } from '../admin/server.js';
import { systemClock, type Clock } from '../clock.js';
import type { ServerConfig } from '../config/types.js';
import { LostGatewayHistory } from '../fleet/lost-gateway-history.js';
import { FleetQuotaCounter } from '../fleet/quota-counter.js';
import { HistoryStore } from '../history/index.js';
import { MetricsExporter, type MetricsExporterOptions } from '../metrics/exporter.js';
import { AllocatorTrimmer } from './allocator-trim.js';
import { attachHistoryRecorder, type HistoryRecorder } from './history-recorder.js';
import { GatewayBackend } from './operator-backend.js';
import { QuotaEnforcer } from './quota.js';
import type { Gateway } from './server.js';

export interface OperatorOptions {
  /** The config the gateway was started with (history, admin and dataDir are read from it). */
  readonly config: ServerConfig;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Re-read the config files and apply them (loadServerConfig + gateway.reload); used by POST /api/reload. */
  readonly reload: () => Promise<ReloadResult>;
  /** How long per-user metrics outlive a user's last session. Default 10 minutes. */
  readonly ledgerRetainMs?: number;
  readonly metrics?: MetricsExporterOptions;
  /** Whether the TUN device is up (see GatewayBackendOptions.tunUp). */
  readonly tunUp?: () => boolean;
  /** The history, opened by openHistory() while the gateway started (its worker opens the file in parallel). */
  readonly history?: Promise<OpenedHistory>;
  /** The server certificate presented now (PEM), for the console's expiry display. */
  readonly certificatePem?: () => string | null;
}

export interface OpenedHistory {
  /** Null when history is disabled or could not be opened (then `error` says why). */
  readonly history: HistoryStore | null;
  readonly error: string | null;
}

/** Opens the history when the config enables it; a failure is logged and reported, never thrown. */
export async function openHistory(config: ServerConfig, logger: Logger, clock: Clock = systemClock): Promise<OpenedHistory> {
  if (!config.history.enabled) return { history: null, error: null };
  try {
    return { history: await HistoryStore.open({ dataDir: config.dataDir, config: config.history, gatewayId: config.gatewayId, clock, logger }), error: null };
  } catch (err) {
    const error = err instanceof Error ? err.message : String(err);
    logger.error({ err: error, dataDir: config.dataDir }, 'history could not be opened; running without it (degraded)');
    return { history: null, error };
  }
}

export interface OperatorSurface {
  readonly backend: GatewayBackend;
  /** Null when history is disabled or could not be opened. */
  readonly history: HistoryStore | null;
  readonly quota: QuotaEnforcer;
  readonly metrics: MetricsExporter;
  /** The admin API's bound port; null when it is not running (disabled or no token). */
  readonly adminPort: number | null;
  /** Stop everything in order (also stops the gateway so its sessions' ends are recorded). Idempotent. */
  stop(): Promise<void>;
}

export async function attachOperatorSurface(gateway: Gateway, opts: OperatorOptions): Promise<OperatorSurface> {
  const { config, logger } = opts;
  const clock = opts.clock ?? systemClock;

  const { history, error: historyError } = await (opts.history ?? openHistory(config, logger, clock));
  const recorder: HistoryRecorder | null = history === null ? null : attachHistoryRecorder(gateway.sessions, history, clock);

  const fleet = gateway.fleetSessions;
  const quota = new QuotaEnforcer({
    sessions: gateway.sessions,
    registry: gateway.registry,
    config: () => gateway.currentConfig,
    history,
    clock,
    logger,
    shared: fleet === null ? null : new FleetQuotaCounter({ redis: fleet.redis, gatewayId: fleet.gatewayId, logger }),
  });
  // A gateway whose lease expired left its history rows open: the one gateway that reaped it closes them.
  const lostHistory = fleet === null || history === null ? null : new LostGatewayHistory({ history, clock, logger });
  const offGatewayLost = lostHistory === null ? () => undefined : fleet!.onGatewayLost((id) => lostHistory.lost(id));
  gateway.sessions.setAdmissionCheck(quota.admissionCheck);
  quota.start();
  const { trimAfterFreedBytes } = config.memory;
  const trimmer = trimAfterFreedBytes === null ? null : new AllocatorTrimmer({ thresholdBytes: trimAfterFreedBytes, clock, logger });
  trimmer?.start();

  const backend = new GatewayBackend({
    gateway,
    history,
    historyError,
    quota,
    logger,
    clock,
    ledgerRetainMs: opts.ledgerRetainMs,
    tunUp: opts.tunUp,
    certificatePem: opts.certificatePem,
    reload: async () => {
      // admin and history are read once at start: gateway.reload reports them as restart settings.
      const result = await opts.reload();
      // Quota changes of the reload (raised, removed, new) apply now, not at the next tick. A throttle in force
      // survives the reload either way: the registry keeps the cap (registry.ts, effectiveRate).
      quota.tick();
      return result;
    },
  });
  const metrics = new MetricsExporter(backend, { ...opts.metrics, fleet: gateway.fleet, trimmer });

  let admin: AdminServer | null;
  try {
    admin = await startAdminServer({
      config: config.admin,
      backend,
      metrics,
      logger,
      dataDir: config.dataDir,
      authAttemptsPerMinute: config.authAttempts.perSourcePerMinute,
    });
  } catch (err) {
    // A configured admin API that cannot listen (port taken) is a startup error, not something to hide.
    gateway.sessions.setAdmissionCheck(null);
    offGatewayLost();
    lostHistory?.stop();
    trimmer?.stop();
    quota.stop();
    metrics.close();
    backend.close();
    recorder?.detach();
    await history?.close();
    throw err;
  }

  let stopping: Promise<void> | null = null;
  return {
    backend,
    history,
    quota,
    metrics,
    adminPort: admin?.port ?? null,
    stop() {
      stopping ??= (async () => {
        await admin?.close();
        // Sessions end while the recorder still listens, so every end reaches the history before it closes.
        await gateway.stop('server_shutdown');
        offGatewayLost();
        lostHistory?.stop();
        trimmer?.stop();
        quota.stop();
        metrics.close();
        backend.close();
        recorder?.detach();
        await history?.close();
      })();
      return stopping;
    },
  };
}
