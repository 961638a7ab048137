/**
 * The thread side of a history worker (worker.ts: SQLite, pg-worker.ts: PostgreSQL): the port to the gateway
 * thread, a pino logger whose lines go back to the gateway's logger, and the loop that gives every request
 * exactly one answer. A synchronous handler is answered before the next message is read (in arrival order);
 * an asynchronous one when it settles (the backend keeps its own order where it matters).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pino, type Logger } from 'pino';
import { QuicgateError } from '../errors.js';
import type { FromWorker, ToWorker, WireError, WorkerInit, WorkerRequests } from './protocol.js';

export type WorkerHandlers = {
  [K in keyof WorkerRequests]: (req: WorkerRequests[K]['req']) => WorkerRequests[K]['res'] | Promise<WorkerRequests[K]['res']>;
};

export interface WorkerThread<I extends WorkerInit> {
  readonly init: I;
  readonly logger: Logger;
  /** Answers every request with its handler; after 'close' is answered the port closes (the thread ends). */
  serve(handlers: WorkerHandlers, describe: (err: unknown) => string): void;
}

export function workerThread<I extends WorkerInit>(backend: I['backend']): WorkerThread<I> {
  const port = parentPort;
  if (port === null) throw new Error(`the ${backend} history worker runs as a worker thread (HistoryStore starts it)`);
  const init = workerData as I;
  if (init.backend !== backend) throw new Error(`the ${backend} history worker was started for ${init.backend}`);
  const post = (msg: FromWorker): void => port.postMessage(msg);
  const logger = pino({ level: init.logLevel }, { write: (line: string) => post({ log: line }) });
  return {
    init,
    logger,
    serve(handlers, describe) {
      const answer = (msg: ToWorker, ok: boolean, valueOrError: unknown): void => {
        post(ok ? { id: msg.id, ok: true, value: valueOrError } : { id: msg.id, ok: false, error: wireError(valueOrError, describe) });
        if (msg.kind === 'close') port.close();
      };
      port.on('message', (msg: ToWorker) => {
        let value: unknown;
        try {
          value = (handlers[msg.kind] as (req: unknown) => unknown)(msg.req);
        } catch (err) {
          answer(msg, false, err);
          return;
        }
        if (value instanceof Promise) value.then((v: unknown) => answer(msg, true, v), (err: unknown) => answer(msg, false, err));
        else answer(msg, true, value);
      });
    },
  };
}

function wireError(err: unknown, describe: (err: unknown) => string): WireError {
  const code = (err as { code?: unknown } | null)?.code;
  return {
    qgCode: err instanceof QuicgateError ? err.code : null,
    code: typeof code === 'string' && !(err instanceof QuicgateError) ? code : null,
    message: err instanceof QuicgateError ? err.message : describe(err),
  };
}
