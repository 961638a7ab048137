/**
 * The SQLite history's backend: requests go to the history worker thread (worker.ts → engine.ts) and come
 * back in order. SQLite is synchronous, so a slow disk, another process's lock or a WAL checkpoint blocks that
 * thread, never the event loop that forwards packets. The worker's log lines are re-emitted on our logger.
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { ErrorCodes, QuicgateError, type ErrorCode } from '../errors.js';
import { errorText, withTimeout, type HistoryBackend } from './backend.js';
import type { FromWorker, RequestKind, Requests, WireError, WorkerInit } from './protocol.js';

interface Waiting {
  resolve(value: unknown): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout | null;
}

export class WorkerBackend implements HistoryBackend {
  readonly location: string;
  readonly shared = false;
  private readonly worker: Worker;
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 1;
  private workerError: string | null = null;
  private stopping = false;

  /** onGone: the thread failed or exited on its own; every later call rejects with that message. */
  constructor(
    init: WorkerInit,
    private readonly logger: Logger,
    private readonly onGone: (message: string) => void,
  ) {
    this.location = init.file;
    this.worker = startWorker(init);
    this.worker.unref();
    this.worker.on('message', (msg: FromWorker) => this.onMessage(msg));
    this.worker.on('error', (err) => this.gone(`history worker failed: ${errorText(err)}`));
    this.worker.on('exit', (code) => {
      if (!this.stopping) this.gone(`history worker exited (code ${code})`);
    });
  }

  call<K extends RequestKind>(kind: K, req: Requests[K]['req'], timeoutMs: number | null): Promise<Requests[K]['res']> {
    if (this.workerError !== null) return Promise.reject(new QuicgateError('QG_ERR_HISTORY', this.workerError));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer =
        timeoutMs === null
          ? null
          : setTimeout(() => {
              this.settle(id);
              reject(new QuicgateError('QG_ERR_HISTORY', `the history database did not answer within ${timeoutMs} ms (${kind})`));
            }, timeoutMs);
      timer?.unref();
      this.waiting.set(id, { resolve: resolve as (value: unknown) => void, reject, timer });
      // Referenced while an answer is awaited, so a process does not exit with a write out.
      if (this.waiting.size === 1) this.worker.ref();
      this.worker.postMessage({ id, kind, req });
    });
  }

  async stop(timeoutMs: number): Promise<void> {
    this.stopping = true;
    await withTimeout(this.worker.terminate(), timeoutMs);
    for (const w of this.waiting.values()) {
      if (w.timer !== null) clearTimeout(w.timer);
      w.reject(new QuicgateError('QG_ERR_CLOSED', 'history store is closed'));
    }
    this.waiting.clear();
  }

  private settle(id: number): Waiting | undefined {
    const w = this.waiting.get(id);
    if (w === undefined) return undefined;
    this.waiting.delete(id);
    if (w.timer !== null) clearTimeout(w.timer);
    if (this.waiting.size === 0) this.worker.unref();
    return w;
  }

  private onMessage(msg: FromWorker): void {
    if ('log' in msg) {
      this.relayLog(msg.log);
      return;
    }
    const w = this.settle(msg.id);
    if (w === undefined) return; // timed out meanwhile
    if (msg.ok) w.resolve(msg.value);
    else w.reject(fromWire(msg.error));
  }

  /** A pino line from the worker, logged again on our logger (level, message and fields as they were). */
  private relayLog(line: string): void {
    let entry: { level?: unknown; msg?: unknown; [key: string]: unknown };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      return;
    }
    const { level, msg, time: _time, pid: _pid, hostname: _hostname, ...fields } = entry;
    const label = typeof level === 'number' ? this.logger.levels.labels[level] : undefined;
    const log = label === undefined ? undefined : (this.logger as unknown as Record<string, unknown>)[label];
    if (typeof log === 'function') (log as (obj: object, msg: string) => void).call(this.logger, fields, String(msg ?? ''));
  }

  private gone(message: string): void {
    if (this.workerError !== null) return;
    this.workerError = message;
    this.onGone(message);
    for (const [id, w] of [...this.waiting]) {
      this.settle(id);
      w.reject(new QuicgateError('QG_ERR_HISTORY', message));
    }
  }
}

/** Starts worker.js next to this module; from the TypeScript sources (tests, tsx) through tsx's loader. */
function startWorker(init: WorkerInit): Worker {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new Worker(new URL('./worker.js', here), { workerData: init });
  const url = JSON.stringify(new URL('./worker.ts', here).href);
  return new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${url}); })`, {
    eval: true,
    workerData: init,
  });
}

function fromWire(e: WireError): Error {
  if (e.qgCode !== null && e.qgCode in ErrorCodes) return new QuicgateError(e.qgCode as ErrorCode, e.message);
  const err = new Error(e.message) as Error & { code?: string };
  if (e.code !== null) err.code = e.code;
  return err;
}
