/** Shared test setup: a temp data dir, a FakeClock, a pino logger that keeps its lines. */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { FakeClock } from '../../../src/clock.js';
import type { HistoryConfig } from '../../../src/config/types.js';
import type { SessionStartRecord } from '../../../src/history/records.js';
import { openDatabase, type SqliteValue } from '../../../src/history/sqlite.js';
import { HistoryStore, type HistoryStoreOptions } from '../../../src/history/store.js';

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export function captureLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { logger, lines };
}

export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'qg-history-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export const baseConfig: HistoryConfig = { enabled: true, retentionDays: 0, flushIntervalMs: 1000, batchSize: 100, queueLimit: 100_000, busyTimeoutMs: 20, rejectionRowsPerHour: 1000, backend: 'sqlite', postgres: null };

export async function openStore(
  dataDir: string,
  clock: FakeClock,
  overrides: Partial<Omit<HistoryStoreOptions, 'dataDir' | 'clock' | 'config' | 'gatewayId'>> & { gatewayId?: string } & { config?: Partial<HistoryConfig> } = {},
): Promise<{ store: HistoryStore; lines: LogLine[] }> {
  const { logger, lines } = captureLogger();
  const store = await HistoryStore.open({
    logger,
    gatewayId: 'gw-test',
    ...overrides,
    dataDir,
    clock,
    config: { ...baseConfig, ...overrides.config },
  });
  return { store, lines };
}

/** Advances the fake clock and waits until the writes its timers started have been answered by the worker. */
export async function advance(clock: FakeClock, store: HistoryStore, ms: number): Promise<void> {
  clock.advance(ms);
  await store.settled();
}

export function startRecord(id: string, user: string, startedAt: number, n = 1): SessionStartRecord {
  return {
    id,
    user,
    ipv4: `198.18.0.${n + 1}`,
    ipv6: `2001:db8::${n + 1}`,
    peer: `192.0.2.${n}:4433`,
    transport: 'h2',
    startedAt,
  };
}

/** Reads the file through its own connection, as an operator would (with the driver the store uses). */
export function rawRows<T>(file: string, sql: string, ...params: SqliteValue[]): T[] {
  const db = openDatabase(file, { readonly: true });
  try {
    return db.prepare(sql).all(...params) as T[];
  } finally {
    db.close();
  }
}

export { FakeClock };
