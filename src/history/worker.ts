/**
 * The history worker thread: runs the HistoryEngine (SQLite, stat calls, retention, queries) so that a slow
 * disk, a held lock or a WAL checkpoint blocks this thread only, never the gateway's event loop. Requests are
 * handled one by one in arrival order; each gets exactly one answer. Log lines go back to the gateway's logger.
 */
import { closeOpenSessions, describeError } from './db.js';
import { HistoryEngine } from './engine.js';
import type { SqliteWorkerInit } from './protocol.js';
import { hourlySeries, recentRejections, recentSessions, searchSessions, userUsage, windowStats } from './queries.js';
import { applyRetention } from './retention.js';
import { workerThread, type WorkerHandlers } from './worker-port.js';

const thread = workerThread<SqliteWorkerInit>('sqlite');
const { init, logger } = thread;
const engine = new HistoryEngine({ file: init.file, dataDir: init.dataDir, busyTimeoutMs: init.busyTimeoutMs, logger, gatewayId: init.gatewayId });

const handlers: WorkerHandlers = {
  open: ({ wallNowMs, quotaFrom }) => {
    const events = engine.open(wallNowMs);
    return { events, quota: engine.quotaRowsFrom(quotaFrom, wallNowMs), error: null };
  },
  resume: ({ wallNowMs }) => engine.resume(wallNowMs),
  write: ({ batch }) => {
    try {
      return { refused: engine.write(batch, batch.wallNowMs), quota: null };
    } catch (err) {
      engine.noteFailure(err);
      throw err;
    }
  },
  retention: ({ retentionDays, wallNowMs }) => applyRetention(engine.db(wallNowMs), retentionDays, wallNowMs),
  recentSessions: ({ query, wallNowMs }) => recentSessions(engine.db(wallNowMs), query),
  recentRejections: ({ query, wallNowMs }) => recentRejections(engine.db(wallNowMs), query),
  stats: ({ query, wallNowMs }) => windowStats(engine.db(wallNowMs), query, wallNowMs),
  searchSessions: ({ query, wallNowMs }) => searchSessions(engine.db(wallNowMs), query),
  hourly: ({ windowHours, gatewayId, wallNowMs }) => hourlySeries(engine.db(wallNowMs), windowHours, wallNowMs, gatewayId),
  closeOpenSessions: ({ gatewayId, reason, endedAtMs, startedByMs }) => closeOpenSessions(engine.db(endedAtMs), gatewayId, reason, endedAtMs, startedByMs),
  userUsage: ({ user, wallNowMs }) => userUsage(engine.db(wallNowMs), user),
  quotaOf: ({ key, wallNowMs }) => engine.quotaRowsOf(key, wallNowMs),
  close: () => {
    engine.close();
    return null;
  },
};

thread.serve(handlers, describeError);
