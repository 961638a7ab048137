/**
 * The PostgreSQL history worker thread: runs the PostgresBackend (pg's pool, the batch's statements, the
 * answers' parsing) so that this work (~130 ms per write at 10,000 live sessions), and whatever a stalled server
 * leaves pending, stay off the gateway's event loop. Writes keep their order on the backend's chain; read
 * queries run beside it. Started, supervised and restarted like the SQLite worker (worker-supervisor.ts).
 */
import { describePgError, PostgresBackend } from './pg-backend.js';
import type { PostgresWorkerInit } from './protocol.js';
import { workerThread, type WorkerHandlers } from './worker-port.js';

const thread = workerThread<PostgresWorkerInit>('postgres');
const { init, logger } = thread;
const backend = new PostgresBackend({ config: init.postgres, gatewayId: init.gatewayId, logger });
/** How long closing waits for the pool's connections to end before the thread goes anyway. */
const CLOSE_TIMEOUT_MS = 2000;

const handlers: WorkerHandlers = {
  open: (req) => backend.call('open', req, null),
  resume: ({ wallNowMs }) => backend.resume(wallNowMs),
  write: (req) => backend.call('write', req, null),
  retention: (req) => backend.call('retention', req, null),
  recentSessions: (req) => backend.call('recentSessions', req, null),
  recentRejections: (req) => backend.call('recentRejections', req, null),
  stats: (req) => backend.call('stats', req, null),
  searchSessions: (req) => backend.call('searchSessions', req, null),
  hourly: (req) => backend.call('hourly', req, null),
  closeOpenSessions: (req) => backend.call('closeOpenSessions', req, null),
  userUsage: (req) => backend.call('userUsage', req, null),
  quotaOf: (req) => backend.call('quotaOf', req, null),
  // After the writes before it (the chain), the pool's connections end; then the thread.
  close: async () => {
    await backend.call('close', {}, null);
    await backend.stop(CLOSE_TIMEOUT_MS);
    return null;
  },
};

thread.serve(handlers, describePgError);
