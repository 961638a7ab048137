/**
 * Keeps the history's worker thread running (worker.ts for SQLite, pg-worker.ts for PostgreSQL): the one owner
 * of the Worker object (worker-backend.ts holds the requests and answers).
 *
 *   start ─► thread up ─► messages relayed (onMessage)
 *   supervise(): from now on (the history opened) a lost thread is restarted; before, a loss is final
 *   thread exits (uncaught exception, out of memory, terminate() from anywhere) while not stopping
 *     ─► onGone(reason): every answer still awaited is lost (the backend fails those calls; the store keeps
 *        its records queued)
 *     ─► one log line, restart after a backoff on the Clock (initialMs, doubling up to maxMs; back to initialMs
 *        once a thread has stayed up maxMs) ─► new thread ─► onRestarted(): the backend resumes the database
 *        in it (no crash recovery: the open rows are this run's live sessions) ─► up again, counted,
 *        onUp(): the store writes its queue
 *     resume fails ─► that thread is ended and the next restart follows the backoff
 *   retire(): the owner ends the thread itself (a 'close' request): its exit is no loss
 *   stop() ─► no more restarts; the thread is terminated.
 *
 * A thread that is alive but stuck in the database is not a loss: the store's stall detection covers it.
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../clock.js';
import { errorText } from './backend.js';
import type { FromWorker, ToWorker, WorkerInit } from './protocol.js';

export interface WorkerSupervisorOptions {
  readonly init: WorkerInit;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Delay before a restart (doubles per failed restart up to maxMs). Default 1 s .. 60 s. */
  readonly restartBackoff?: { readonly initialMs: number; readonly maxMs: number } | undefined;
  readonly onMessage: (msg: FromWorker) => void;
  /** The thread is gone; `reason` says how. Called once per thread. */
  readonly onGone: (reason: string) => void;
  /** A restarted thread is running and nothing else was sent to it yet; resolve when it may take work. */
  readonly onRestarted: () => Promise<void>;
  /** After onRestarted resolved: the thread is 'up' and takes work again. */
  readonly onUp: () => void;
}

/** 'up': takes work; 'restarting': the thread is gone or resuming, work is refused; 'stopped': for good. */
export type WorkerState = 'up' | 'restarting' | 'stopped';

export const DEFAULT_RESTART_BACKOFF = { initialMs: 1_000, maxMs: 60_000 };

export class WorkerSupervisor {
  private readonly opts: WorkerSupervisorOptions;
  private readonly backoff: { readonly initialMs: number; readonly maxMs: number };
  private worker: Worker;
  private workerError: string | null = null;
  private stateNow: WorkerState = 'up';
  private supervised = false;
  private delayMs: number;
  private upSince: number;
  private restartTimer: TimerHandle | null = null;
  private restartCount = 0;
  private referenced = false;
  /** The owner is closing the thread itself: its exit is no loss. */
  private retiring = false;

  constructor(opts: WorkerSupervisorOptions) {
    this.opts = opts;
    this.backoff = opts.restartBackoff ?? DEFAULT_RESTART_BACKOFF;
    this.delayMs = this.backoff.initialMs;
    this.upSince = opts.clock.now();
    this.worker = this.spawn();
  }

  get state(): WorkerState {
    return this.stateNow;
  }

  /** Threads started after one was lost (successful or not). */
  get restarts(): number {
    return this.restartCount;
  }

  /** Why the last thread was lost (null while none was). */
  get lastLoss(): string | null {
    return this.workerError;
  }

  /** From now on a lost thread is restarted (the first open succeeded: a restart has a database to resume). */
  supervise(): void {
    this.supervised = true;
  }

  post(msg: ToWorker): void {
    this.worker.postMessage(msg);
  }

  /** Referenced while an answer is awaited, so the process does not exit with a write out. */
  ref(referenced: boolean): void {
    this.referenced = referenced;
    if (referenced) this.worker.ref();
    else this.worker.unref();
  }

  /** Ends the thread the way a crash would (tests; an operator's debugging). It is restarted as after any loss. */
  kill(): Promise<number> {
    return this.worker.terminate();
  }

  /** The owner ends the thread (a 'close' request, then stop()): its exit is not restarted from. */
  retire(): void {
    this.retiring = true;
    this.restartTimer?.cancel();
    this.restartTimer = null;
  }

  /** No more restarts; terminates the thread. Resolves when it has exited. */
  async stop(): Promise<void> {
    this.stateNow = 'stopped';
    this.restartTimer?.cancel();
    this.restartTimer = null;
    await this.worker.terminate();
  }

  private ending(): boolean {
    return this.stateNow === 'stopped' || this.retiring;
  }

  private spawn(): Worker {
    const worker = startWorker(this.opts.init);
    this.workerError = null;
    if (!this.referenced) worker.unref();
    worker.on('message', (msg: FromWorker) => {
      if (worker === this.worker) this.opts.onMessage(msg);
    });
    // 'exit' always follows 'error': the loss is handled there, once, with the error's text if there was one.
    worker.on('error', (err) => {
      if (worker === this.worker) this.workerError = `history worker failed: ${errorText(err)}`;
    });
    worker.on('exit', (code) => {
      if (worker !== this.worker || this.stateNow === 'stopped') return;
      const reason = this.workerError ?? `history worker exited (code ${code})`;
      if (this.retiring || !this.supervised) {
        this.stateNow = 'stopped';
        this.workerError = reason;
        this.opts.onGone(reason);
      } else this.lost(reason);
    });
    return worker;
  }

  private lost(reason: string): void {
    const wasUp = this.stateNow === 'up';
    this.stateNow = 'restarting';
    this.workerError = reason;
    if (wasUp && this.opts.clock.now() - this.upSince >= this.backoff.maxMs) this.delayMs = this.backoff.initialMs;
    this.opts.onGone(reason);
    this.opts.logger.error(
      { err: reason, restartInMs: this.delayMs, restarts: this.restartCount },
      'history worker lost; restarting it (records stay queued, bounded)',
    );
    const delay = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, this.backoff.maxMs);
    this.restartTimer = this.opts.clock.setTimeout(() => {
      this.restartTimer = null;
      void this.restart();
    }, delay);
  }

  private async restart(): Promise<void> {
    if (this.ending()) return;
    this.restartCount++;
    const worker = this.spawn();
    this.worker = worker;
    try {
      await this.opts.onRestarted();
    } catch (err) {
      // Ended meanwhile (its loss already scheduled the next attempt), replaced or stopping: nothing to do.
      if (worker !== this.worker || this.restartTimer !== null || this.ending()) return;
      // Resumed nothing: end this thread; its exit schedules the next attempt.
      this.workerError = `history worker restarted but could not resume: ${errorText(err)}`;
      void worker.terminate();
      return;
    }
    if (worker !== this.worker || this.ending()) return;
    this.stateNow = 'up';
    this.upSince = this.opts.clock.now();
    this.opts.logger.info({ restarts: this.restartCount }, 'history worker restarted; writes resume');
    this.opts.onUp();
  }
}

/** The thread's module for each backend, next to this one. */
const ENTRY: Readonly<Record<WorkerInit['backend'], string>> = { sqlite: 'worker', postgres: 'pg-worker' };

/** Starts the backend's worker .js next to this module; from the TypeScript sources (tests, tsx) through tsx's loader. */
function startWorker(init: WorkerInit): Worker {
  const here = import.meta.url;
  const entry = ENTRY[init.backend];
  if (!here.endsWith('.ts')) return new Worker(new URL(`./${entry}.js`, here), { workerData: init });
  const url = JSON.stringify(new URL(`./${entry}.ts`, here).href);
  return new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${url}); })`, {
    eval: true,
    workerData: init,
  });
}
