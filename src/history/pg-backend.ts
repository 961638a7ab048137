/**
 * The PostgreSQL history's backend, shared by the fleet. It runs in the PostgreSQL history worker thread
 * (pg-worker.ts; the gateway's thread talks to it through worker-backend.ts): pg is async I/O, so a stalled
 * server costs only pending promises, but building the statements and parsing their answers is CPU work
 * (measured with a statement per row: 46-64 µs per row, 0.5-1.1 s per flush at 10,000 live sessions; with the
 * counters in one statement still ~130 ms) that must not take the forwarding thread's time (docs/robustness.md).
 *
 *   writes, quota reads, retention, crash closing: one after another on a chain (answers in order, as the
 *     SQLite worker gives them: a quota read sees every write sent before it)
 *   admin/console queries: straight on the pool, in parallel with the chain
 *   not ready (down at start, or the schema not checked yet): every chained request first connects,
 *     migrates (advisory lock) and closes the sessions this gateway left open ('crash'); failing that, it fails
 *   a write: planBatch → one transaction; a record the schema refuses: each part in a savepoint, the refused
 *     ones dropped alone; the fleet-wide quota rows of the asked periods read back before the commit.
 */
import pg from 'pg';
import type { Logger } from 'pino';
import type { HistoryPostgresConfig } from '../config/types.js';
import { QuicgateError } from '../errors.js';
import { errorText, withTimeout, type HistoryBackend } from './backend.js';
import type { QuotaRow } from './engine.js';
import { applyPgMigrations } from './pg-migrations.js';
import * as q from './pg-queries.js';
import { redactUrl } from './pg-url.js';
import type { RequestKind, Requests, WireBatch } from './protocol.js';
import type { HistoryStartupEvent } from './records.js';
import { LiveSessions, planBatch, singleParts, type Batch, type BatchOp } from './writer.js';

type CounterRow = Extract<BatchOp, { op: 'updateCounters' }>['row'];

export interface PostgresBackendOptions {
  readonly config: HistoryPostgresConfig;
  readonly gatewayId: string;
  readonly logger: Logger;
}

const UNDEFINED_TABLE = '42P01';
const INT8_OID = 20;
const NUMERIC_OID = 1700;
/** bigint columns and SUM()s as JS numbers: the history's counters and times are far below 2^53. */
const types = {
  getTypeParser: (oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID || oid === NUMERIC_OID ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format ?? 'text'),
};

type Handlers = { [K in RequestKind]: (req: Requests[K]['req']) => Promise<Requests[K]['res']> };
/** Requests that run one after another on the chain; the rest (read queries) go straight to the pool. */
const CHAINED: ReadonlySet<RequestKind> = new Set(['open', 'write', 'retention', 'quotaOf', 'closeOpenSessions', 'close']);

export class PostgresBackend implements HistoryBackend {
  readonly location: string;
  readonly shared = true;
  /** The worker thread around it counts its own restarts; a lost connection is a failed request, not a loss. */
  readonly restarts = 0;
  readonly unavailable = null;
  private readonly pool: pg.Pool;
  private readonly gatewayId: string;
  private readonly logger: Logger;
  private readonly live = new LiveSessions();
  private chain: Promise<unknown> = Promise.resolve();
  private ready = false;
  /** Crash recovery ran (once, before our first write: later every open row of ours is live). */
  private recovered = false;
  /** The schema vanished under us (database recreated): insert our live sessions again with the next write. */
  private reseed = false;
  private stopped = false;
  private readonly handlers: Handlers;
  /** What the first successful preparation did (created, migrated, crash_recovered), for the open answer. */
  private readonly startupEvents: HistoryStartupEvent[] = [];

  constructor(opts: PostgresBackendOptions) {
    this.location = redactUrl(opts.config.url);
    this.gatewayId = opts.gatewayId;
    this.logger = opts.logger;
    this.pool = new pg.Pool({
      connectionString: opts.config.url,
      max: opts.config.poolSize,
      connectionTimeoutMillis: opts.config.connectTimeoutMs,
      query_timeout: opts.config.queryTimeoutMs,
      application_name: `quicgate ${opts.gatewayId}`.slice(0, 63),
      allowExitOnIdle: true,
      types,
    });
    // An idle connection the server drops (restart, outage) emits here; without a listener it would crash us.
    this.pool.on('error', (err) => this.logger.debug({ err: describePgError(err) }, 'history: idle PostgreSQL connection lost'));
    this.handlers = {
      open: (req) => this.open(req.wallNowMs, req.quotaFrom),
      write: (req) => this.write(req.batch, req.quotaKeys),
      retention: async ({ retentionDays, wallNowMs }) => this.withClient(wallNowMs, (c) => q.applyRetention(c, retentionDays, wallNowMs)),
      quotaOf: async ({ key, wallNowMs }) => this.withClient(wallNowMs, (c) => q.quotaRowsOfKeys(c, [key])),
      closeOpenSessions: async ({ gatewayId, reason, endedAtMs, startedByMs }) =>
        this.withClient(endedAtMs, (c) => q.closeOpenSessions(c, gatewayId, reason, endedAtMs, startedByMs)),
      close: async () => null,
      recentSessions: ({ query }) => q.recentSessions(this.pool, query),
      recentRejections: ({ query }) => q.recentRejections(this.pool, query),
      stats: ({ query, wallNowMs }) => q.windowStats(this.pool, query, wallNowMs),
      searchSessions: ({ query }) => q.searchSessions(this.pool, query),
      hourly: ({ windowHours, gatewayId, wallNowMs }) => q.hourlySeries(this.pool, windowHours, wallNowMs, gatewayId),
      userUsage: ({ user }) => q.userUsage(this.pool, user),
    };
  }

  call<K extends RequestKind>(kind: K, req: Requests[K]['req'], timeoutMs: number | null): Promise<Requests[K]['res']> {
    if (this.stopped) return Promise.reject(new QuicgateError('QG_ERR_CLOSED', 'history store is closed'));
    const run = (): Promise<Requests[K]['res']> => (this.handlers[kind] as (r: Requests[K]['req']) => Promise<Requests[K]['res']>)(req);
    let answer: Promise<Requests[K]['res']>;
    if (CHAINED.has(kind)) {
      answer = this.chain.then(run);
      this.chain = answer.catch(() => undefined);
    } else answer = run();
    const failed = (err: unknown): never => {
      throw err instanceof QuicgateError ? err : new QuicgateError('QG_ERR_HISTORY', `PostgreSQL: ${describePgError(err)}`, { cause: err });
    };
    if (timeoutMs === null) return answer.catch(failed);
    return withTimeout(answer, timeoutMs).then((r) => {
      if (r === 'timeout') throw new QuicgateError('QG_ERR_HISTORY', `the history database did not answer within ${timeoutMs} ms (${kind})`);
      return r;
    }, failed);
  }

  /**
   * A restarted worker thread's start: migrations checked, but no crash recovery, since this gateway's open rows
   * are this run's live sessions; they become the live sessions again with their written counters, so the
   * next snapshots and ends add only the traffic since. On the chain: no write is planned before it.
   */
  resume(wallNowMs: number): Promise<{ events: HistoryStartupEvent[]; liveSessions: number }> {
    this.recovered = true;
    const answer = this.chain.then(() =>
      this.withClient(wallNowMs, async (client) => {
        const open = await q.openSessionsOf(client, this.gatewayId);
        this.live.apply(open);
        return { events: this.startupEvents.splice(0), liveSessions: open.size };
      }),
    );
    this.chain = answer.catch(() => undefined);
    return answer;
  }

  async stop(timeoutMs: number): Promise<void> {
    this.stopped = true;
    await withTimeout(
      this.pool.end().catch(() => undefined),
      timeoutMs,
    );
  }

  /** Startup: connect, migrate, close our crashed sessions. Unreachable: answers with the error (degraded start). */
  private async open(wallNowMs: number, quotaFrom: string): Promise<Requests['open']['res']> {
    try {
      const events = await this.withClient(wallNowMs, async () => []);
      return { events: [...this.startupEvents.splice(0), ...events], quota: await q.quotaRowsFrom(this.pool, quotaFrom), error: null };
    } catch (err) {
      if (err instanceof QuicgateError) throw err; // a schema newer than ours: not something a retry mends
      const error = `PostgreSQL at ${this.location} unreachable: ${describePgError(err)}`;
      this.logger.error({ err: error }, 'history: PostgreSQL unreachable at start; queueing (bounded) and retrying');
      return { events: [], quota: [], error };
    }
  }

  /** A pooled connection, the schema checked first if it was not yet. Released (destroyed after an error). */
  private async withClient<T>(wallNowMs: number, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let failure: unknown = null;
    try {
      if (!this.ready) await this.prepare(client, wallNowMs);
      return await fn(client);
    } catch (err) {
      failure = err;
      if ((err as { code?: unknown } | null)?.code === UNDEFINED_TABLE) {
        // The database was recreated or restored: migrate again, and write our live sessions again.
        this.ready = false;
        this.reseed = true;
      }
      throw err;
    } finally {
      // A connection that failed mid-transaction or lost the server is not given to the next request.
      client.release(failure !== null && !isDataError(failure) ? toError(failure) : undefined);
    }
  }

  private async prepare(client: pg.PoolClient, wallNowMs: number): Promise<void> {
    const migrated = await applyPgMigrations(client, wallNowMs, { gatewayId: this.gatewayId });
    if (migrated.from === 0) this.startupEvents.push({ kind: 'created', path: this.location });
    else if (migrated.from !== migrated.to) this.startupEvents.push({ kind: 'migrated', ...migrated });
    if (!this.recovered) {
      // Every open row of ours is from an earlier life: this process writes nothing before it is ready.
      const recovered = await q.closeOpenSessions(client, this.gatewayId, 'crash', null);
      if (recovered > 0) {
        this.startupEvents.push({ kind: 'crash_recovered', sessions: recovered });
        this.logger.warn({ sessions: recovered, gatewayId: this.gatewayId }, "history: closed sessions left open by a crash (reason 'crash')");
      }
      this.recovered = true;
    }
    this.ready = true;
    this.logger.info({ location: this.location, schema: migrated.to }, 'history: PostgreSQL ready');
  }

  private async write(wire: WireBatch, quotaKeys: readonly string[]): Promise<Requests['write']['res']> {
    return this.withClient(wire.wallNowMs, async (client) => {
      // ON CONFLICT DO NOTHING makes a reseed harmless where the rows are still there.
      const batch: Batch = { ...wire, reseed: this.reseed ? this.live.starts() : [] };
      let refused = 0;
      let quota: QuotaRow[];
      const saved = this.live.save();
      await client.query('BEGIN');
      try {
        try {
          await this.runPlan(client, batch);
        } catch (err) {
          if (!isDataError(err)) throw err;
          // A record the schema refuses must not block the queue forever: write one by one, drop the refused.
          await client.query('ROLLBACK');
          this.live.restore(saved);
          await client.query('BEGIN');
          for (const part of singleParts(batch)) {
            await client.query('SAVEPOINT qg_part');
            try {
              await this.runPlan(client, part);
              await client.query('RELEASE SAVEPOINT qg_part');
            } catch (partErr) {
              if (!isDataError(partErr)) throw partErr;
              await client.query('ROLLBACK TO SAVEPOINT qg_part');
              refused++;
              this.logger.error({ err: describePgError(partErr), record: part }, 'history: dropping a record the database refuses');
            }
          }
        }
        quota = await q.quotaRowsOfKeys(client, quotaKeys);
        await client.query('COMMIT');
        this.reseed = false;
      } catch (err) {
        this.live.restore(saved);
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
      return { refused, quota };
    });
  }

  /** The batch's ops in order; LiveSessions advances with each part (restored by the caller on rollback). */
  private async runPlan(client: pg.PoolClient, batch: Batch): Promise<void> {
    const plan = planBatch(batch, this.live);
    // The live sessions' counters (one op each, consecutive in the plan) go as one statement: a round trip and
    // a message per session cost the thread ~50 µs each; every other op runs on its own, in order.
    let counters: CounterRow[] = [];
    for (const op of plan.ops) {
      if (op.op === 'updateCounters') {
        counters.push(op.row);
        continue;
      }
      if (counters.length > 0) await q.updateCountersMany(client, counters);
      counters = [];
      await q.runOp(client, this.gatewayId, op);
    }
    if (counters.length > 0) await q.updateCountersMany(client, counters);
    this.live.apply(plan.staged);
  }
}

/** SQLSTATE class 22 (data exception) or 23 (integrity constraint): this record, not the connection. */
function isDataError(err: unknown): boolean {
  if (err instanceof TypeError || err instanceof RangeError) return true;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^2[23][0-9A-Z]{3}$/.test(code);
}

/** pg's errors, and Node's AggregateError (every address refused) whose own message is empty. */
export function describePgError(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return [...new Set(err.errors.map((e) => describePgError(e)))].join('; ');
  const code = (err as { code?: unknown } | null)?.code;
  const message = errorText(err) || 'connection failed';
  return typeof code === 'string' && !message.includes(code) ? `${code}: ${message}` : message;
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
