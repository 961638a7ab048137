/**
 * Session manager: who may connect, the live sessions, their limits and timeouts, and the one way they end.
 *
 *   authenticate(request)  throttle(source) ─► verifyPassword (unknown user: decoy hash, same timing)
 *                          ─► disabled ─► per-user limit (policy reject; a valid resume claim's old session does
 *                          not count) ─► total limit ─► fleet caps (SharedSessionCaps.reserve: an atomic
                          check-and-add across gateways, which may replace the user's oldest session anywhere)
                          ─► { ok }
 *   open(conn, request)    resume claim valid? end the old session ('resumed') and prefer its addresses
 *                          ─► re-check limits (replace_oldest ends the oldest with 'replaced')
 *                          ─► pool.allocate ─► registry.add (the user's shared bucket) ─► dataPlane.attach
 *                          (route, shaping) ─► watch conn.closed ─► onOpened
 *   end(session, reason)   once per session: state closed ─► fleet release ─► conn.close({reason}) ─► dataPlane.detach
 *                          ─► registry.remove (last one drops the bucket) ─► pool.release ─► count ─► onClosed
 *   checker (clock interval, start()/stop()): idle_timeout / session_timeout ─► end()
 *
 * Setup and release of a session's resources live here and nowhere else, release in reverse order of setup
 * (wireguard-go's peer Start/Stop): listeners only observe. A listener that throws is logged and counted
 * (stats().listenerErrors, a metric), never allowed to skip a release.
 *
 * Resume: every session has a secret, HMAC(key of this process, session id), sent once in its assignment and
 * never stored or logged. A reconnecting client presents it; a match (constant-time) lets the new session take
 * over the old one's addresses and slot under the user's limit.
 *
 * Rejections are counted by RejectReason and reported to onRejected; every end is counted by EndReason.
 */
import { createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import { verifyPassword } from '../config/password.js';
import type { Bandwidth, ServerConfig, SessionLimits, UserConfig } from '../config/types.js';
import { QuicgateError, isQuicgateError, type ErrorCode } from '../errors.js';
import type { AdmissionResult, ConnectRequest, ResumeClaim, TunnelConnection } from '../transport/types.js';
import { AdmissionThrottle } from './admission.js';
import type { TokenBucket } from './bucket.js';
import { AddressPool, type Allocation, type PoolStats } from './pool.js';
import { UserRegistry, effectiveLimit } from './registry.js';
import { END_REASONS, REJECT_REASONS, newCounters, type EndReason, type RejectReason, type Session } from './session.js';

/** How often the background checker looks for idle and expired sessions. */
export const DEFAULT_CHECK_INTERVAL_MS = 1000;

/** The server-wide values a reload may change for sessions. */
export interface SessionDefaults {
  readonly defaultBandwidth: Bandwidth;
  readonly limits: SessionLimits;
}

export interface SessionManagerOptions {
  readonly config: ServerConfig;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Session ids; random UUIDs by default. */
  readonly newId?: () => string;
  /** Defaults: built from config.networks / config.users, config.authAttempts. */
  readonly pool?: AddressPool;
  readonly registry?: UserRegistry;
  readonly throttle?: AdmissionThrottle;
  readonly checkIntervalMs?: number;
  /** Extra admission rule (e.g. a spent data quota), consulted after the password and disabled checks. */
  readonly admissionCheck?: AdmissionCheck;
  /** Who hands out and takes back a session's addresses; the pool itself by default (a fleet: src/fleet/addresses.ts). */
  readonly addresses?: SessionAddresses;
}

/** A session's tunnel addresses: taken in open(), given back in end() (both synchronous). */
export interface SessionAddresses {
  /** Throws QG_ERR_POOL_EXHAUSTED (taking nothing) when none is left. */
  allocate(user: string, preferred: readonly string[], sessionId: string): Allocation;
  release(held: HeldAddresses): void;
}

/** The addresses one session holds (a Session is one). */
export interface HeldAddresses extends Allocation {
  readonly id: string;
  readonly user: string;
}

/** The forwarding side of a session (src/gateway/forwarding.ts): its route and shaping queues. */
export interface SessionDataPlane {
  attach(session: Session): void;
  detach(session: Session): void;
}

/** Returns the reason to refuse the user, or null to let the other checks decide. */
export type AdmissionCheck = (user: UserConfig) => RejectReason | null;

/** The session limits that apply to one admission: the user's own cap, the total cap and the policy. */
export interface CapLimits {
  readonly maxPerUser: number;
  readonly maxTotal: number;
  readonly atLimit: SessionLimits['atLimit'];
}

/**
 * Caps shared with other gateways (src/fleet/session-registry.ts). reserve() is the async check-and-add at
 * admission, after the local checks passed (`leaving`: the resumed session that must not count); claim() hands
 * open() the reserved session id (null: nothing reserved, e.g. the shared store is down: local caps only);
 * abandon() frees a reservation open() did not use; opened() and released() bracket a session's life.
 */
export interface SharedSessionCaps {
  reserve(request: ConnectRequest, limits: CapLimits, leaving: string | null): Promise<'user_limit' | 'server_limit' | null>;
  claim(request: ConnectRequest): string | null;
  abandon(sessionId: string): void;
  opened(session: Session): void;
  released(session: Session): void;
}

export type OpenedListener = (session: Session) => void;
export type ClosedListener = (session: Session, reason: EndReason, message: string | undefined) => void;
export type RejectedListener = (user: string, source: string, reason: RejectReason) => void;

export interface SessionStats {
  readonly sessions: number;
  /** Users with at least one live session. */
  readonly users: number;
  readonly perUser: Readonly<Record<string, number>>;
  /** Sessions opened since start. */
  readonly opened: number;
  readonly rejections: Readonly<Record<RejectReason, number>>;
  readonly ended: Readonly<Record<EndReason, number>>;
  /** Resume claims that matched no live session of the user (the client then got a new session). */
  readonly resumeRefused: number;
  /** Session listeners that threw (logged at error level each time). */
  readonly listenerErrors: number;
  readonly pool: PoolStats;
}

interface RejectInfo {
  readonly status: 401 | 403 | 429 | 503;
  readonly error: ErrorCode;
  readonly message: string;
}

const REJECTIONS: Record<RejectReason, RejectInfo> = {
  auth_failed: { status: 401, error: 'QG_ERR_AUTH_FAILED', message: 'unknown user or wrong password' },
  user_disabled: { status: 403, error: 'QG_ERR_USER_DISABLED', message: 'this user is disabled' },
  user_limit: { status: 429, error: 'QG_ERR_USER_LIMIT', message: 'this user has reached their session limit' },
  server_limit: { status: 503, error: 'QG_ERR_SERVER_LIMIT', message: 'the gateway has reached its session limit' },
  throttled: { status: 429, error: 'QG_ERR_THROTTLED', message: 'too many attempts from this address; try again later' },
  pool_exhausted: { status: 503, error: 'QG_ERR_POOL_EXHAUSTED', message: 'no tunnel address is free' },
  quota_exceeded: { status: 403, error: 'QG_ERR_QUOTA_EXCEEDED', message: "this user's data quota is spent" },
};

function zeroCounts<K extends string>(keys: readonly K[]): Record<K, number> {
  return Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>;
}

type LimitVerdict = { readonly reject: 'user_limit' | 'server_limit' } | { readonly reject: null; readonly replace: number };

export class SessionManager {
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly newId: () => string;
  readonly pool: AddressPool;
  readonly registry: UserRegistry;
  readonly throttle: AdmissionThrottle;
  private readonly addresses: SessionAddresses;
  private users: Map<string, UserConfig>;
  private defaults: SessionDefaults;
  private readonly sessions = new Map<string, Session>();
  private readonly rejections = zeroCounts(REJECT_REASONS);
  private readonly ended = zeroCounts(END_REASONS);
  private openedCount = 0;
  private resumeRefused = 0;
  private listenerErrors = 0;
  private dataPlane: SessionDataPlane | null = null;
  /** Key of this process's resume secrets: sessions do not outlive the process, so neither does the key. */
  private readonly resumeKey = randomBytes(32);
  private readonly openedListeners: OpenedListener[] = [];
  private readonly closedListeners: ClosedListener[] = [];
  private readonly rejectedListeners: RejectedListener[] = [];
  private readonly checkIntervalMs: number;
  private checker: TimerHandle | null = null;
  private shutDown = false;
  private admissionCheck: AdmissionCheck | null;
  private sharedCaps: SharedSessionCaps | null = null;

  constructor(options: SessionManagerOptions) {
    const { config } = options;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger;
    this.newId = options.newId ?? randomUUID;
    this.pool = options.pool ?? new AddressPool(config);
    const pool = this.pool;
    this.addresses = options.addresses ?? { allocate: (user, preferred) => pool.allocate(user, preferred), release: (session) => pool.release(session) };
    this.registry = options.registry ?? new UserRegistry({ clock: this.clock });
    this.throttle =
      options.throttle ??
      new AdmissionThrottle({ perSourcePerMinute: config.authAttempts.perSourcePerMinute, clock: this.clock, logger: this.logger });
    this.users = new Map(config.users.map((u) => [u.name, u]));
    this.defaults = { defaultBandwidth: config.defaultBandwidth, limits: config.limits };
    this.checkIntervalMs = options.checkIntervalMs ?? DEFAULT_CHECK_INTERVAL_MS;
    this.admissionCheck = options.admissionCheck ?? null;
  }

  /** Install (or with null remove) the extra admission rule; the Gateway builds this manager, so it is settable. */
  setAdmissionCheck(check: AdmissionCheck | null): void {
    this.admissionCheck = check;
  }

  /** Install (or with null remove) the fleet-wide caps; the Gateway does when the config has a fleet. */
  setSharedCaps(caps: SharedSessionCaps | null): void {
    this.sharedCaps = caps;
  }

  /** Install the data plane that routes and shapes each session (the Gateway does, once its TUN is open). */
  setDataPlane(dataPlane: SessionDataPlane | null): void {
    this.dataPlane = dataPlane;
  }

  /** The session's resume secret, for its assignment only (never log it). */
  resumeSecretOf(session: Session): string {
    return this.secretFor(session.id).toString('base64url');
  }

  /** Start the background checker that ends idle and over-age sessions. Idempotent. */
  start(): void {
    if (this.checker === null && !this.shutDown) this.checker = this.clock.setInterval(() => this.expire(), this.checkIntervalMs);
  }

  /** Stop the checker (sessions stay; see closeAll). Idempotent; start() resumes. */
  stop(): void {
    this.checker?.cancel();
    this.checker = null;
  }

  // ── admission ──────────────────────────────────────────────────────────────────────────────────────────

  /** Decide whether a session request may proceed. Never throws for a refused request. */
  async authenticate(request: ConnectRequest): Promise<AdmissionResult> {
    if (!(await this.throttle.admit(request.sourceAddress))) return this.refuse(request, 'throttled');
    const user = this.users.get(request.user);
    // Unknown users go through scrypt too (decoy hash), so the answer and its timing match a wrong password.
    // The decoy costs what a configured user's hash costs (hash parameters vary, e.g. older users).
    const decoyLike = user === undefined ? (this.users.values().next().value?.passwordHash ?? null) : null;
    const passwordOk = await verifyPassword(request.password, user?.passwordHash ?? null, decoyLike);
    if (user === undefined || !passwordOk) return this.refuse(request, 'auth_failed');
    await this.throttle.succeeded(request.sourceAddress);
    if (user.disabled) return this.refuse(request, 'user_disabled');
    const extra = this.admissionCheck?.(user) ?? null;
    if (extra !== null) return this.refuse(request, extra);
    // A resumed session ends when its successor opens: it must not count against the limits it frees.
    const resumed = this.resumable(user.name, request.resume);
    const verdict = this.checkLimits(user, resumed === undefined ? 0 : 1);
    if (verdict.reject !== null) return this.refuse(request, verdict.reject);
    if (this.sharedCaps !== null) {
      const shared = await this.sharedCaps.reserve(request, this.capLimitsOf(user), resumed?.id ?? null);
      if (shared !== null) return this.refuse(request, shared);
    }
    return { ok: true, user: user.name };
  }

  /**
   * Create the session for an authenticated connection. Re-checks the limits (they may have changed since
   * authenticate); throws QuicgateError (QG_ERR_AUTH_FAILED, QG_ERR_USER_DISABLED, QG_ERR_USER_LIMIT,
   * QG_ERR_SERVER_LIMIT, QG_ERR_POOL_EXHAUSTED, QG_ERR_CLOSED) and records the rejection; on a throw nothing is
   * kept and the caller closes the connection.
   */
  open(connection: TunnelConnection, request: ConnectRequest): Session {
    const reserved = this.sharedCaps?.claim(request) ?? null;
    try {
      return this.openSession(connection, request, reserved);
    } catch (err) {
      if (reserved !== null) this.sharedCaps?.abandon(reserved);
      throw err;
    }
  }

  /** open() with the fleet's reserved session id, if any. */
  private openSession(connection: TunnelConnection, request: ConnectRequest, reserved: string | null): Session {
    if (this.shutDown) throw new QuicgateError('QG_ERR_CLOSED', 'the session manager is shut down');
    const user = this.users.get(request.user);
    if (user === undefined) throw this.refusal(request, 'auth_failed');
    if (user.disabled) throw this.refusal(request, 'user_disabled');
    let preferred = request.previousAddresses;
    if (request.resume !== null) {
      const old = this.resumable(user.name, request.resume);
      if (old === undefined) {
        this.resumeRefused++;
        this.logger.info({ user: user.name, claimed: request.resume.sessionId }, 'resume claim matches no live session; opening a new one');
      } else {
        preferred = [old.ipv4, old.ipv6].filter((a): a is string => a !== null);
        this.end(old, 'resumed', 'the client reconnected and resumed this session');
      }
    }
    const verdict = this.checkLimits(user, 0);
    if (verdict.reject !== null) throw this.refusal(request, verdict.reject);
    for (let i = 0; i < verdict.replace; i++) {
      const oldest = this.oldestSessionOf(user.name);
      if (oldest !== undefined) this.end(oldest, 'replaced', 'replaced by a newer session of the same user');
    }
    const id = reserved ?? this.newId();
    if (this.sessions.has(id)) throw new Error(`session id generator repeated an id: ${id}`);

    // Setup, in this order; release (here on a failure, in end() otherwise) in the reverse one.
    let allocation;
    try {
      allocation = this.addresses.allocate(user.name, preferred, id);
    } catch (err) {
      if (isQuicgateError(err, 'QG_ERR_POOL_EXHAUSTED')) this.recordRejection(request, 'pool_exhausted');
      throw err;
    }
    const now = this.clock.now();
    let session: Session;
    try {
      const bucket = this.registry.add(user.name, id, effectiveLimit(user));
      session = {
        id,
        user: user.name,
        connection,
        transport: request.transport,
        peer: request.peer,
        ipv4: allocation.ipv4,
        ipv6: allocation.ipv6,
        startedAt: this.clock.wallNow(),
        startedMono: now,
        lastActivity: now,
        bucket,
        counters: newCounters(),
        state: { kind: 'open' },
      };
      this.sessions.set(id, session);
      try {
        this.dataPlane?.attach(session);
      } catch (err) {
        this.sessions.delete(id);
        throw err;
      }
    } catch (err) {
      this.registry.remove(id);
      this.addresses.release({ id, user: user.name, ...allocation });
      throw err;
    }
    this.openedCount++;
    // Registered fleet-wide last in setup, so end() releases it first (reverse order); never throws.
    this.sharedCaps?.opened(session);
    connection.closed.then(
      (info) => this.end(session, 'client_closed', info.message ?? info.reason),
      (err: unknown) => this.end(session, 'error', err instanceof Error ? err.message : String(err)),
    );
    this.logger.info(
      { session: id, user: user.name, peer: request.peer, transport: request.transport, ipv4: allocation.ipv4, ipv6: allocation.ipv6 },
      'session opened',
    );
    this.emit(this.openedListeners, (fn) => fn(session));
    return session;
  }

  // ── the one end path ───────────────────────────────────────────────────────────────────────────────────

  /**
   * End a session: closes the transport with the reason, then releases its addresses, registry entry and
   * (if it was the user's last) bucket. Runs once per session; later calls (a racing close or timeout)
   * return false and change nothing.
   */
  end(session: Session, reason: EndReason, message?: string): boolean {
    if (session.state.kind === 'closed' || this.sessions.get(session.id) !== session) return false;
    session.state = { kind: 'closed', reason, message, endedAt: this.clock.wallNow() };
    // Release in the reverse order of open(); each step runs even when the one before it threw.
    const failures: { step: string; err: unknown }[] = [];
    const step = (name: string, fn: () => void): void => {
      try {
        fn();
      } catch (err) {
        failures.push({ step: name, err });
      }
    };
    step('fleet release', () => this.sharedCaps?.released(session));
    step('transport close', () => session.connection.close(message === undefined ? { reason } : { reason, message }));
    step('data plane detach', () => this.dataPlane?.detach(session));
    this.sessions.delete(session.id);
    step('registry remove', () => this.registry.remove(session.id));
    step('address release', () => this.addresses.release(session));
    this.ended[reason]++;
    for (const { step: name, err } of failures) this.logger.error({ err, session: session.id, step: name }, 'a release step failed; the others ran');
    const pool = this.pool.stats();
    this.logger.info(
      {
        session: session.id,
        user: session.user,
        reason,
        message,
        bytesIn: session.counters.bytesIn,
        bytesOut: session.counters.bytesOut,
        // What the release left behind, for operators (and the end-to-end tests) to see it is all freed.
        userSessionsLeft: this.registry.connectionsOf(session.user).size,
        userBucketLive: this.registry.bucketOf(session.user) !== null,
        addressesInUse: (pool.ipv4?.inUse ?? 0) + (pool.ipv6?.inUse ?? 0),
      },
      'session ended',
    );
    this.emit(this.closedListeners, (fn) => fn(session, reason, message));
    return true;
  }

  /** A keepalive (or any sign of life outside the packet path) keeps the session from idling out. */
  touch(session: Session): void {
    session.lastActivity = this.clock.now();
  }

  /** End the session with that id; throws QG_ERR_SESSION_NOT_FOUND when none is live. */
  kill(id: string, reason: EndReason = 'admin_kill', message?: string): Session {
    const session = this.sessions.get(id);
    if (session === undefined) throw new QuicgateError('QG_ERR_SESSION_NOT_FOUND', `no live session has id ${id}`, { details: { id } });
    this.end(session, reason, message);
    return session;
  }

  /** End all sessions of a user; returns how many ended (0 for a user without sessions). */
  killUser(name: string, reason: EndReason = 'admin_kill', message?: string): number {
    let count = 0;
    for (const session of this.sessionsOf(name)) if (this.end(session, reason, message)) count++;
    return count;
  }

  /** Shutdown: end every session, stop the checker and the throttle's timer; open() refuses afterwards. */
  closeAll(reason: EndReason = 'server_shutdown', message?: string): number {
    this.shutDown = true;
    this.stop();
    this.throttle.close();
    let count = 0;
    for (const session of [...this.sessions.values()]) if (this.end(session, reason, message)) count++;
    return count;
  }

  // ── reload ─────────────────────────────────────────────────────────────────────────────────────────────

  /**
   * Apply a reloaded user list. Static addresses are validated first (throws QG_ERR_ADDRESS_UNAVAILABLE and
   * changes nothing). Then: removed or disabled users' sessions end with 'user_removed'; a changed bandwidth
   * applies to connected users at once (setRate on the shared bucket; sessions repointed when a user goes
   * limited ↔ unlimited); session limits apply to new sessions.
   */
  applyUsers(users: readonly UserConfig[], defaults: SessionDefaults): void {
    this.pool.updateStatic(users);
    this.users = new Map(users.map((u) => [u.name, u]));
    this.defaults = defaults;
    for (const name of [...this.registry.userNames()]) {
      const user = this.users.get(name);
      if (user === undefined || user.disabled) {
        this.killUser(name, 'user_removed', user === undefined ? 'user removed from config' : 'user disabled');
        continue;
      }
      const limit = effectiveLimit(user);
      this.repointed(name, () => this.registry.setUserLimit(name, limit.bandwidth, limit.burst));
    }
  }

  /**
   * Cap a user's rate on top of their configured limit (null lifts it): the quota enforcer's input to the
   * registry, which owns the effective rate. Applies to live sessions at once and to later ones.
   */
  setRateCap(name: string, cap: number | null): void {
    this.repointed(name, () => this.registry.setRateCap(name, cap));
  }

  /** Run a registry change and put the user's bucket on their sessions where the object changed. */
  private repointed(name: string, change: () => TokenBucket | null): void {
    const before = this.registry.bucketOf(name);
    const after = change();
    if (after !== before) for (const session of this.sessionsOf(name)) session.bucket = after;
  }

  // ── listeners ──────────────────────────────────────────────────────────────────────────────────────────

  /** Returns a function that removes the listener. Listener exceptions are logged and counted, never propagated. */
  onOpened(fn: OpenedListener): () => void {
    return addListener(this.openedListeners, fn);
  }

  onClosed(fn: ClosedListener): () => void {
    return addListener(this.closedListeners, fn);
  }

  onRejected(fn: RejectedListener): () => void {
    return addListener(this.rejectedListeners, fn);
  }

  // ── queries ────────────────────────────────────────────────────────────────────────────────────────────

  get(id: string): Session | undefined {
    return this.sessions.get(id);
  }

  /** Live sessions, oldest first (a snapshot). */
  list(): Session[] {
    return [...this.sessions.values()];
  }

  /** Live sessions of a user, oldest first (a snapshot). */
  sessionsOf(name: string): Session[] {
    const result: Session[] = [];
    for (const id of this.registry.connectionsOf(name)) {
      const session = this.sessions.get(id);
      if (session !== undefined) result.push(session);
    }
    return result;
  }

  get size(): number {
    return this.sessions.size;
  }

  stats(): SessionStats {
    const perUser: Record<string, number> = {};
    for (const name of this.registry.userNames()) {
      Object.defineProperty(perUser, name, { value: this.registry.connectionsOf(name).size, enumerable: true, writable: true, configurable: true });
    }
    return {
      sessions: this.sessions.size,
      users: this.registry.userCount,
      perUser,
      opened: this.openedCount,
      rejections: { ...this.rejections },
      ended: { ...this.ended },
      resumeRefused: this.resumeRefused,
      listenerErrors: this.listenerErrors,
      pool: this.pool.stats(),
    };
  }

  /** End idle and over-age sessions now (the background checker calls this). */
  expire(): number {
    const now = this.clock.now();
    const { idleTimeoutMs, sessionTimeoutMs } = this.defaults.limits;
    let count = 0;
    for (const session of [...this.sessions.values()]) {
      if (sessionTimeoutMs !== null && sessionTimeoutMs > 0 && now - session.startedMono >= sessionTimeoutMs) {
        if (this.end(session, 'session_timeout', `session reached its maximum lifetime of ${sessionTimeoutMs} ms`)) count++;
      } else if (idleTimeoutMs > 0 && now - session.lastActivity >= idleTimeoutMs) {
        if (this.end(session, 'idle_timeout', `no packets or keepalives for ${idleTimeoutMs} ms`)) count++;
      }
    }
    return count;
  }

  // ── internals ──────────────────────────────────────────────────────────────────────────────────────────

  private capLimitsOf(user: UserConfig): CapLimits {
    const { limits } = this.defaults;
    return { maxPerUser: user.maxSessions ?? limits.maxSessionsPerUser, maxTotal: limits.maxTotalSessions, atLimit: limits.atLimit };
  }

  /** `leaving`: sessions of the user about to end (a resumed one), not counted. */
  private checkLimits(user: UserConfig, leaving: number): LimitVerdict {
    const { limits } = this.defaults;
    const max = user.maxSessions ?? limits.maxSessionsPerUser;
    const count = this.registry.connectionsOf(user.name).size - leaving;
    let replace = 0;
    if (count >= max) {
      if (limits.atLimit === 'reject' || max <= 0) return { reject: 'user_limit' };
      replace = count - max + 1;
    }
    // Replacing keeps the total the same, so only a net new session has to fit under the total limit.
    if (replace === 0 && this.sessions.size - leaving >= limits.maxTotalSessions) return { reject: 'server_limit' };
    return { reject: null, replace };
  }

  /** The user's live session the claim proves ownership of, or undefined. Constant-time in the secret. */
  private resumable(user: string, claim: ResumeClaim | null): Session | undefined {
    if (claim === null) return undefined;
    const session = this.sessions.get(claim.sessionId);
    if (session === undefined || session.user !== user || session.state.kind !== 'open') return undefined;
    const expected = this.secretFor(session.id);
    const presented = Buffer.from(claim.secret, 'base64url');
    return presented.length === expected.length && timingSafeEqual(presented, expected) ? session : undefined;
  }

  private secretFor(id: string): Buffer {
    return createHmac('sha256', this.resumeKey).update(id).digest();
  }

  private oldestSessionOf(name: string): Session | undefined {
    for (const id of this.registry.connectionsOf(name)) {
      const session = this.sessions.get(id);
      if (session !== undefined) return session;
    }
    return undefined;
  }

  private refuse(request: ConnectRequest, reason: RejectReason): AdmissionResult {
    this.recordRejection(request, reason);
    const info = REJECTIONS[reason];
    return { ok: false, status: info.status, code: reason, message: info.message };
  }

  private refusal(request: ConnectRequest, reason: RejectReason): QuicgateError {
    this.recordRejection(request, reason);
    const info = REJECTIONS[reason];
    return new QuicgateError(info.error, info.message, { details: { reason, user: request.user } });
  }

  private recordRejection(request: ConnectRequest, reason: RejectReason): void {
    this.rejections[reason]++;
    // Throttled attempts are logged once per window by the throttle; logging each would let a flood fill the log.
    if (reason !== 'throttled') this.logger.info({ user: request.user, source: request.sourceAddress, reason }, 'session refused');
    this.emit(this.rejectedListeners, (fn) => fn(request.user, request.sourceAddress, reason));
  }

  private emit<F>(listeners: readonly F[], call: (fn: F) => void): void {
    for (const fn of listeners) {
      try {
        call(fn);
      } catch (err) {
        // Counted and logged loudly: nothing the gateway needs runs in a listener, so it cannot hide a leak.
        this.listenerErrors++;
        this.logger.error({ err }, 'a session listener threw');
      }
    }
  }
}

function addListener<F>(list: F[], fn: F): () => void {
  list.push(fn);
  return () => {
    const i = list.indexOf(fn);
    if (i >= 0) list.splice(i, 1);
  };
}
