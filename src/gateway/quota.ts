/**
 * Data quotas: bytes per day or month per user, both directions together, kept in the history database so a
 * restart does not reset them.
 *
 *   every intervalMs (Clock):  deltas of live sessions' counters since the last tick (+ final deltas of
 *     sessions that ended meanwhile) ─► history.addQuotaUsage(user, periodKey) and the cached `used`
 *     ─► spent?  disconnect: killUser('quota_exceeded'), admission refuses until the period ends
 *                throttle:   a rate cap (the throttle rate) on the user until the period rolls over
 *   period rolled over / quota raised or removed by a reload ─► cap lifted
 *
 * The enforcer never sets a bucket: it supplies the cap, the registry computes the effective rate from the
 * configured limit and the cap (registry.ts, effectiveRate). So a reload, which supplies the configured limit,
 * keeps a throttle in force, and the first session of a throttled user starts throttled.
 *
 * In a fleet (src/fleet/quota-counter.ts) each tick also adds the deltas to a fleet-wide counter and takes the
 * fleet's total when it is higher than what this gateway counted: a quota spent across gateways is enforced on
 * every one of them within a tick or two.
 *
 * The config is read on every tick (gateway.currentConfig), so a reload that changes a quota applies at the
 * next tick, whichever way the reload came. Without a history the usage is counted in memory only.
 */
import type { Logger } from 'pino';
import type { QuotaView } from '../admin/backend.js';
import type { Clock, TimerHandle } from '../clock.js';
import type { QuotaConfig, ServerConfig, UserConfig } from '../config/types.js';
import { periodKey, type HistoryStore } from '../history/index.js';
import type { UserRegistry } from './registry.js';
import type { RejectReason, Session } from './session.js';
import type { SessionManager } from './sessions.js';

export const DEFAULT_QUOTA_INTERVAL_MS = 1000;

export interface QuotaEnforcerOptions {
  readonly sessions: SessionManager;
  readonly registry: UserRegistry;
  /** The running config; read on every tick so reloads apply. */
  readonly config: () => ServerConfig;
  readonly history: Pick<HistoryStore, 'addQuotaUsage' | 'quotaUsage'> | null;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly intervalMs?: number;
  /** The fleet-wide usage (null: this gateway alone). */
  readonly shared?: SharedQuotaUsage | null;
}

/** A user's period this gateway watches, with what it counted itself (the seed of a missing fleet counter). */
export interface SharedQuotaWatch {
  readonly user: string;
  readonly periodKey: string;
  readonly localUsed: number;
}

/** Usage shared across gateways: add() this gateway's bytes, used() the fleet's total, flush() in the background. */
export interface SharedQuotaUsage {
  add(user: string, periodKey: string, bytes: number): void;
  /** The fleet-wide bytes of the period as far as known; null before the first read. */
  used(user: string, periodKey: string): number | null;
  flush(watch: readonly SharedQuotaWatch[]): void;
}

interface QuotaState {
  readonly period: QuotaConfig['period'];
  readonly key: string;
  /** Bytes used in the period as far as counted (history value at load plus what we added since). */
  used: number;
  /** False while the stored usage could not be read; retried every tick. */
  loaded: boolean;
  /** Our throttle is on the user's bucket. */
  throttled: boolean;
  /** "quota spent" was logged for this period. */
  announced: boolean;
}

export class QuotaEnforcer {
  private readonly opts: QuotaEnforcerOptions;
  private readonly states = new Map<string, QuotaState>();
  /** Bytes (in + out) of each live session already counted. */
  private readonly counted = new Map<string, number>();
  /** Final deltas of sessions that ended since the last tick, per user. */
  private readonly endedDeltas = new Map<string, number>();
  private readonly unsubscribe: (() => void)[] = [];
  private timer: TimerHandle | null = null;
  /** Users by name, rebuilt when a reload swaps the config object. */
  private usersOf: { readonly config: ServerConfig; readonly byName: ReadonlyMap<string, UserConfig> } | null = null;

  constructor(options: QuotaEnforcerOptions) {
    this.opts = options;
    this.unsubscribe.push(
      options.sessions.onClosed((s) => {
        const delta = total(s) - (this.counted.get(s.id) ?? 0);
        this.counted.delete(s.id);
        if (delta > 0) this.endedDeltas.set(s.user, (this.endedDeltas.get(s.user) ?? 0) + delta);
      }),
      // A user over a throttle quota who was not capped yet (usage read from the history at this first
      // session): cap before any packet. A cap set earlier already gave the session a throttled bucket.
      options.sessions.onOpened((s) => {
        const user = this.userConfig(s.user);
        const quota = user?.quota;
        if (user === undefined || quota == null || quota.action !== 'throttle') return;
        const state = this.stateFor(user, quota);
        if (!state.throttled && this.usedNow(user.name, state) >= quota.bytes) this.throttle(user, quota);
      }),
    );
  }

  /** Start the tick timer. Idempotent. */
  start(): void {
    this.timer ??= this.opts.clock.setInterval(() => this.tick(), this.opts.intervalMs ?? DEFAULT_QUOTA_INTERVAL_MS);
  }

  /** Stop the timer and the listeners. A throttle in force stays on the buckets (the gateway is going down). */
  stop(): void {
    this.timer?.cancel();
    this.timer = null;
    for (const off of this.unsubscribe.splice(0)) off();
  }

  /** For SessionManager.setAdmissionCheck: refuses users whose disconnect quota is spent this period. */
  readonly admissionCheck = (user: UserConfig): RejectReason | null => {
    const quota = user.quota;
    if (quota === null || quota.action !== 'disconnect') return null;
    return this.usedNow(user.name, this.stateFor(user, quota)) >= quota.bytes ? 'quota_exceeded' : null;
  };

  /** Count, store and enforce (the timer calls this; a reload may call it to apply at once). */
  tick(): void {
    const deltas = new Map(this.endedDeltas);
    this.endedDeltas.clear();
    for (const s of this.opts.sessions.list()) {
      const now = total(s);
      const delta = now - (this.counted.get(s.id) ?? 0);
      if (delta <= 0) continue;
      this.counted.set(s.id, now);
      deltas.set(s.user, (deltas.get(s.user) ?? 0) + delta);
    }

    const withQuota = new Set<string>();
    const shared = this.opts.shared ?? null;
    const watch: SharedQuotaWatch[] = [];
    for (const user of this.opts.config().users) {
      const quota = user.quota;
      if (quota === null) continue;
      withQuota.add(user.name);
      const state = this.stateFor(user, quota);
      if (!state.loaded) this.reload(user.name, state);
      else this.refresh(user.name, state);
      const delta = deltas.get(user.name) ?? 0;
      if (delta > 0) {
        this.opts.history?.addQuotaUsage(user.name, state.key, delta);
        state.used += delta;
        shared?.add(user.name, state.key, delta);
      }
      if (shared !== null) {
        const fleetUsed = shared.used(user.name, state.key);
        if (fleetUsed !== null && fleetUsed > state.used) state.used = fleetUsed;
        watch.push({ user: user.name, periodKey: state.key, localUsed: state.used });
      }
      this.enforce(user, quota, state);
    }
    shared?.flush(watch);
    // A user whose quota (or whole entry) a reload removed: lift our throttle, forget the state.
    for (const [name, state] of this.states) {
      if (withQuota.has(name)) continue;
      const user = this.userConfig(name);
      if (state.throttled && user !== undefined) this.restore(user);
      this.states.delete(name);
    }
  }

  /** The quota as shown by the API (used includes bytes not yet counted by a tick); null without a quota. */
  view(user: UserConfig): QuotaView | null {
    const quota = user.quota;
    if (quota === null) return null;
    const state = this.stateFor(user, quota);
    const used = this.usedNow(user.name, state);
    return {
      bytes: quota.bytes,
      period: quota.period,
      periodKey: state.key,
      used,
      remaining: Math.max(0, quota.bytes - used),
      action: quota.action,
      exceeded: used >= quota.bytes,
    };
  }

  /** Bytes used in the current period, for metrics; null when the user has no quota. */
  used(name: string): number | null {
    const user = this.userConfig(name);
    if (user?.quota == null) return null;
    return this.usedNow(name, this.stateFor(user, user.quota));
  }

  // ── internals ──────────────────────────────────────────────────────────────────────────────────────

  private enforce(user: UserConfig, quota: QuotaConfig, state: QuotaState): void {
    const spent = state.used >= quota.bytes;
    const throttleRate = quota.action === 'throttle' ? quota.throttleRate : null;
    if (!spent || throttleRate === null) {
      if (state.throttled) this.restore(user);
    }
    if (!spent) return;
    if (!state.announced) {
      state.announced = true;
      this.opts.logger.warn({ user: user.name, period: state.key, used: state.used, quota: quota.bytes, action: quota.action }, 'data quota spent');
    }
    // The loader requires a rate with `throttle`; should one be missing, disconnecting is the safe side.
    if (throttleRate === null) {
      this.opts.sessions.killUser(user.name, 'quota_exceeded', `data quota of ${quota.bytes} bytes for ${state.key} is spent`);
    } else {
      this.throttle(user, quota);
    }
  }

  /** Cap the user at the throttle rate (idempotent). The registry keeps a lower configured limit. */
  private throttle(user: UserConfig, quota: QuotaConfig): void {
    const state = this.states.get(user.name);
    if (state === undefined || quota.throttleRate === null) return;
    state.throttled = true;
    if (this.opts.registry.rateCapOf(user.name) === quota.throttleRate) return;
    this.opts.sessions.setRateCap(user.name, quota.throttleRate);
    this.opts.logger.info({ user: user.name, rate: quota.throttleRate }, 'data quota spent: user throttled');
  }

  private restore(user: UserConfig): void {
    const state = this.states.get(user.name);
    if (state !== undefined) state.throttled = false;
    this.opts.sessions.setRateCap(user.name, null);
    this.opts.logger.info({ user: user.name, bandwidth: user.bandwidth }, 'quota throttle lifted: configured limit restored');
  }

  /** The user's state for the current period; a new period (or period kind) starts from the stored usage. */
  private stateFor(user: UserConfig, quota: QuotaConfig): QuotaState {
    const key = periodKey(quota.period, this.opts.clock.wallNow());
    const current = this.states.get(user.name);
    if (current !== undefined && current.key === key && current.period === quota.period) return current;
    const state: QuotaState = { period: quota.period, key, used: 0, loaded: false, throttled: current?.throttled ?? false, announced: false };
    this.states.set(user.name, state);
    this.reload(user.name, state);
    // The old period's throttle ends with it (enforce() puts it back if the new period is spent already).
    if (state.throttled && !(state.used >= quota.bytes && quota.action === 'throttle')) this.restore(user);
    return state;
  }

  /** Read the stored usage (which includes what we added, written or not). Keeps counting in memory if it fails. */
  private reload(name: string, state: QuotaState): void {
    const history = this.opts.history;
    if (history === null) {
      state.loaded = true;
      return;
    }
    try {
      state.used = history.quotaUsage(name, state.key);
      state.loaded = true;
    } catch (err) {
      this.opts.logger.warn({ user: name, err: err instanceof Error ? err.message : String(err) }, 'quota usage unreadable; counting in memory until it is');
    }
  }

  /**
   * The history's usage may have grown beyond what we counted: other gateways add to the same row in a shared
   * PostgreSQL (read back with each write). Never lowers what we counted.
   */
  private refresh(name: string, state: QuotaState): void {
    try {
      state.used = Math.max(state.used, this.opts.history?.quotaUsage(name, state.key) ?? 0);
    } catch {
      // unreadable for now: keep counting in memory (reload() logged it when it first failed)
    }
  }

  /** Counted usage plus the bytes of live sessions since the last tick. */
  private usedNow(name: string, state: QuotaState): number {
    let used = state.used + (this.endedDeltas.get(name) ?? 0);
    for (const s of this.opts.sessions.sessionsOf(name)) used += Math.max(0, total(s) - (this.counted.get(s.id) ?? 0));
    return used;
  }

  private userConfig(name: string): UserConfig | undefined {
    const config = this.opts.config();
    if (this.usersOf?.config !== config) this.usersOf = { config, byName: new Map(config.users.map((u) => [u.name, u])) };
    return this.usersOf.byName.get(name);
  }
}

function total(s: Session): number {
  return s.counters.bytesIn + s.counters.bytesOut;
}
