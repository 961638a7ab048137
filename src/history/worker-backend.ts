/**
 * The history's backend on the gateway's thread: requests go to the history worker thread and come back
 * matched by id. SQLite (worker.ts → engine.ts) is synchronous, so a slow disk, another process's lock or a
 * WAL checkpoint blocks that thread, never the event loop that forwards packets; PostgreSQL (pg-worker.ts →
 * pg-backend.ts) keeps pg's per-row CPU work and a stalled server's pending queries there. The worker's log
 * lines are re-emitted on our logger. A lost thread (crash, out of memory, terminated) is restarted by
 * worker-supervisor.ts once the history has opened; the new thread resumes the database (resume.ts) before it
 * takes requests again.
 */
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { ErrorCodes, QuicgateError, type ErrorCode } from '../errors.js';
import { withTimeout, type HistoryBackend } from './backend.js';
import { redactUrl } from './pg-url.js';
import type { FromWorker, RequestKind, Requests, ToWorker, WireError, WorkerInit, WorkerRequestKind, WorkerRequests } from './protocol.js';
import { WorkerSupervisor } from './worker-supervisor.js';

interface Waiting {
  resolve(value: unknown): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout | null;
}

export interface WorkerBackendOptions {
  readonly init: WorkerInit;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Delay before restarting a lost thread (doubling up to maxMs). Default 1 s .. 60 s. */
  readonly restartBackoff?: { readonly initialMs: number; readonly maxMs: number } | undefined;
  /** Real time a restarted thread gets to resume the file (quick_check, migrations). */
  readonly resumeTimeoutMs: number;
  /** The thread was lost (a restart follows once the history is open); calls fail until it is back. */
  readonly onLost: (message: string) => void;
  /** A restarted thread resumed the file and takes requests again. */
  readonly onBack: () => void;
}

export class WorkerBackend implements HistoryBackend {
  readonly location: string;
  /** PostgreSQL is shared by the fleet; a SQLite file has this gateway as its only writer. */
  readonly shared: boolean;
  /** The thread and its restarts (exposed for tests that kill it). */
  readonly supervisor: WorkerSupervisor;
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 1;

  constructor(private readonly opts: WorkerBackendOptions) {
    const init = opts.init;
    this.location = init.backend === 'sqlite' ? init.file : redactUrl(init.postgres.url);
    this.shared = init.backend === 'postgres';
    this.supervisor = new WorkerSupervisor({
      init: opts.init,
      clock: opts.clock,
      logger: opts.logger,
      restartBackoff: opts.restartBackoff,
      onMessage: (msg) => this.onMessage(msg),
      onGone: (reason) => this.gone(reason),
      onRestarted: () => this.resume(),
      onUp: () => opts.onBack(),
    });
  }

  get restarts(): number {
    return this.supervisor.restarts;
  }

  get unavailable(): string | null {
    const state = this.supervisor.state;
    if (state === 'up') return null;
    const loss = this.supervisor.lastLoss ?? 'history worker stopped';
    return state === 'restarting' ? `${loss} (restarting)` : loss;
  }

  call<K extends RequestKind>(kind: K, req: Requests[K]['req'], timeoutMs: number | null): Promise<Requests[K]['res']> {
    const unavailable = this.unavailable;
    if (unavailable !== null) return Promise.reject(new QuicgateError('QG_ERR_HISTORY', unavailable));
    // After 'close' the thread ends on its own: no loss to restart from.
    if (kind === 'close') this.supervisor.retire();
    const answer = this.send(kind, req, timeoutMs);
    // Opened: from now on a lost thread has a database to resume, and is restarted.
    if (kind === 'open') void answer.then(() => this.supervisor.supervise(), () => undefined);
    return answer;
  }

  async stop(timeoutMs: number): Promise<void> {
    await withTimeout(this.supervisor.stop(), timeoutMs);
    for (const w of this.waiting.values()) {
      if (w.timer !== null) clearTimeout(w.timer);
      w.reject(new QuicgateError('QG_ERR_CLOSED', 'history store is closed'));
    }
    this.waiting.clear();
  }

  private send<K extends WorkerRequestKind>(kind: K, req: WorkerRequests[K]['req'], timeoutMs: number | null): Promise<WorkerRequests[K]['res']> {
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
      if (this.waiting.size === 1) this.supervisor.ref(true);
      this.supervisor.post({ id, kind, req } as ToWorker);
    });
  }

  /**
   * What a start does, in a restarted thread: open (quick_check, migrations, a corrupt file moved aside), but
   * no crash recovery, since this gateway's sessions still open in the file are its live ones: the engine
   * takes them over with their written counters. The store's queued records go out with its next write.
   */
  private async resume(): Promise<void> {
    const { events, liveSessions } = await this.send('resume', { wallNowMs: Math.trunc(this.opts.clock.wallNow()) }, this.opts.resumeTimeoutMs);
    this.opts.logger.info({ events: events.map((e) => e.kind), liveSessions }, 'history worker resumed the database');
  }

  private settle(id: number): Waiting | undefined {
    const w = this.waiting.get(id);
    if (w === undefined) return undefined;
    this.waiting.delete(id);
    if (w.timer !== null) clearTimeout(w.timer);
    if (this.waiting.size === 0) this.supervisor.ref(false);
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
    const logger = this.opts.logger;
    const label = typeof level === 'number' ? logger.levels.labels[level] : undefined;
    const log = label === undefined ? undefined : (logger as unknown as Record<string, unknown>)[label];
    if (typeof log === 'function') (log as (obj: object, msg: string) => void).call(logger, fields, String(msg ?? ''));
  }

  /** The thread is gone: answers awaited from it never come. */
  private gone(message: string): void {
    for (const [id, w] of [...this.waiting]) {
      this.settle(id);
      w.reject(new QuicgateError('QG_ERR_HISTORY', message));
    }
    this.opts.onLost(message);
  }
}

function fromWire(e: WireError): Error {
  if (e.qgCode !== null && e.qgCode in ErrorCodes) return new QuicgateError(e.qgCode as ErrorCode, e.message);
  const err = new Error(e.message) as Error & { code?: string };
  if (e.code !== null) err.code = e.code;
  return err;
}
