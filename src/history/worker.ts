/**
 * The history worker thread: runs the HistoryEngine (SQLite, stat calls, retention, queries) so that a slow
 * disk, a held lock or a WAL checkpoint blocks this thread only, never the gateway's event loop. Requests are
 * handled one by one in arrival order; each gets exactly one answer. Log lines go back to the gateway's logger.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import { QuicgateError } from '../errors.js';
import { closeOpenSessions, describeError } from './db.js';
import { HistoryEngine } from './engine.js';
import type { FromWorker, ToWorker, WireError, WorkerInit, WorkerRequests } from './protocol.js';
import { hourlySeries, recentRejections, recentSessions, searchSessions, userUsage, windowStats } from './queries.js';
import { applyRetention } from './retention.js';

const port = parentPort;
if (port === null) throw new Error('src/history/worker.ts runs as a worker thread (HistoryStore starts it)');
const init = workerData as WorkerInit;
const post = (msg: FromWorker): void => port.postMessage(msg);
const logger = pino({ level: init.logLevel }, { write: (line: string) => post({ log: line }) });
const engine = new HistoryEngine({ file: init.file, dataDir: init.dataDir, busyTimeoutMs: init.busyTimeoutMs, logger, gatewayId: init.gatewayId });

type Handlers = { [K in keyof WorkerRequests]: (req: WorkerRequests[K]['req']) => WorkerRequests[K]['res'] };

const handlers: Handlers = {
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

port.on('message', (msg: ToWorker) => {
  try {
    const handler = handlers[msg.kind] as (req: unknown) => unknown;
    post({ id: msg.id, ok: true, value: handler(msg.req) });
  } catch (err) {
    post({ id: msg.id, ok: false, error: wireError(err) });
  }
  if (msg.kind === 'close') port.close();
});

function wireError(err: unknown): WireError {
  const code = (err as { code?: unknown } | null)?.code;
  return {
    qgCode: err instanceof QuicgateError ? err.code : null,
    code: typeof code === 'string' && !(err instanceof QuicgateError) ? code : null,
    message: err instanceof QuicgateError ? err.message : describeError(err),
  };
}
