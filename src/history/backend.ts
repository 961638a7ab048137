/**
 * Where a HistoryStore's requests go: the history worker thread (worker-backend.ts on the gateway's thread,
 * which runs SQLite's engine or the PostgreSQL backend, pg-backend.ts, in the thread). The store keeps the
 * queue, batching, backoff and metrics; a backend only answers.
 */
import type { RequestKind, Requests } from './protocol.js';

export interface HistoryBackend {
  /** Where the history is, for logs: the file, or the PostgreSQL URL without its password. */
  readonly location: string;
  /** Other gateways write to the same database: quota totals are read back after every write. */
  readonly shared: boolean;
  /** Times the backend's worker thread was started again after it was lost. */
  readonly restarts: number;
  /** Why the backend takes no requests right now (its worker lost, being restarted), or null when it does. */
  readonly unavailable: string | null;
  /** Answers one request; rejects (QG_ERR_HISTORY) when it fails or takes longer than timeoutMs of real time. */
  call<K extends RequestKind>(kind: K, req: Requests[K]['req'], timeoutMs: number | null): Promise<Requests[K]['res']>;
  /** Releases the backend (thread, connections) within about timeoutMs; calls still waiting reject QG_ERR_CLOSED. */
  stop(timeoutMs: number): Promise<void>;
}

/** Resolves with the promise's value, or 'timeout' after ms of real time. */
export async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
    timer.unref();
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
