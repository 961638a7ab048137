/**
 * The client: connect and authenticate, take the assignment, bring up the TUN, forward, keep alive, and
 * reconnect with backoff when the path dies or the gateway goes away — until stopped, or until the gateway
 * says not to come back, which ends the client with a clear error (QG_ERR_REJECTED, CLI exit code 3).
 *
 * Whether to come back is the gateway's decision, not the client's: every `close` message carries `retry`,
 * and the client stops exactly when it is false (admin_kill, replaced, user_removed, quota_exceeded, ...;
 * the gateway's list is in src/transport/connection-base.ts). A refusal at connect time has no close message:
 * there HTTP 401/403/404 count as final (src/transport/wt-auth.ts refusalRetries), and so does a server
 * certificate that does not verify (QG_ERR_TLS: a configuration error, or someone in the path; retrying cannot
 * fix either); on HTTP/3 the refusal arrives as the session's close before the assignment (CloseInfo.refused);
 * anything else is retried with backoff until reconnect.max_attempts, then run() ends with
 * QG_ERR_CONNECT_FAILED. A connection that ends without the gateway's word (path lost, keepalives missed) is
 * retried.
 *
 * Every reconnect presents the previous session's id and resume secret (from its assignment): the gateway ends
 * that session at once (`resumed`) and gives the same addresses back, so a long outage leaves no ghost session.
 * When the local addresses change (roaming), the path is probed with a keepalive; no answer within
 * PATH_PROBE_MS and the client reconnects at once, without waiting for the dead-path limit or a backoff.
 *
 *   connect ──► assign ──► TUN up (kept across reconnects unless the assignment changes) ──► forward
 *      ▲                                                                                     │ closed / dead path
 *      └──────────────── backoff (exponential, jittered) ◄───────────────────────────────────┘
 */
import type { Logger } from 'pino';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import type { ClientConfig } from '../config/types.js';
import { QuicgateError, isQuicgateError } from '../errors.js';
import type { AssignControl, ControlMessage } from '../transport/control.js';
import type { CloseInfo, ResumeClaim, TunnelConnection } from '../transport/types.js';
import { sessionMtu } from '../transport/mtu.js';
import { rejectedError } from '../transport/wt-auth.js';
import type { TunDevice, TunSettings } from '../tun/device.js';
import { Backoff } from './backoff.js';
import { ClientForwarder } from './client-forwarder.js';
import { KeepaliveMonitor } from './keepalive.js';

export interface ConnectParams {
  readonly config: ClientConfig;
  readonly previousAddresses: readonly string[];
  /** The last session's id and resume secret, null before the first assignment. */
  readonly resume: ResumeClaim | null;
  readonly logger: Logger;
}

/** Calls `onChange` whenever the host's own addresses change; returns a function that stops watching. */
export type PathWatch = (onChange: () => void) => () => void;

/** How long a keepalive probe after a local address change may go unanswered before the client reconnects. */
export const PATH_PROBE_MS = 500;


export interface ClientParts {
  readonly logger: Logger;
  readonly clock?: Clock;
  readonly connect: (params: ConnectParams) => Promise<TunnelConnection>;
  readonly openTun: (settings: TunSettings) => Promise<TunDevice>;
  /** Optional system changes per assignment (DNS, host route to the gateway); returns an undo. */
  readonly applySystem?: (assignment: AssignControl) => Promise<() => Promise<void>>;
  /** How long to wait for the assignment after the session opens. */
  readonly assignTimeoutMs?: number;
  /** Watches the host's addresses (src/client/path-watch.ts); without it only keepalives notice a new path. */
  readonly watchPath?: PathWatch;
}

export type ClientState =
  | { readonly kind: 'connecting'; readonly attempt: number }
  | { readonly kind: 'up'; readonly assignment: AssignControl; readonly since: number }
  | { readonly kind: 'waiting'; readonly attempt: number; readonly delayMs: number; readonly lastError: string }
  | { readonly kind: 'stopped'; readonly error: QuicgateError | null };

export class TunnelClient {
  state: ClientState = { kind: 'connecting', attempt: 0 };
  readonly forwarder = new ClientForwarder();
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly backoff: Backoff;
  private connection: TunnelConnection | null = null;
  private tun: TunDevice | null = null;
  private tunKey = '';
  private undoSystem: (() => Promise<void>) | null = null;
  private addresses: string[] = [];
  private resume: ResumeClaim | null = null;
  /** The last connection was given up after a local address change: reconnect without a backoff delay. */
  private pathChanged = false;
  private stopRequested = false;
  private wake: (() => void) | null = null;
  private readonly listeners = new Set<(state: ClientState) => void>();

  constructor(
    private readonly config: ClientConfig,
    private readonly parts: ClientParts,
  ) {
    this.clock = parts.clock ?? systemClock;
    this.logger = parts.logger;
    this.backoff = new Backoff(config.reconnect);
  }

  onStateChange(listener: (state: ClientState) => void): void {
    this.listeners.add(listener);
  }

  /** Runs until stop() or a final rejection; resolves with the final error (null after stop()). */
  async run(): Promise<QuicgateError | null> {
    let finalError: QuicgateError | null = null;
    while (!this.stopRequested) {
      this.setState({ kind: 'connecting', attempt: this.backoff.attempts });
      this.logger.info({ attempt: this.backoff.attempts, transport: this.config.transport }, 'connecting');
      let lastError = '';
      this.pathChanged = false;
      try {
        const info = await this.connectOnce();
        if (info.retry === false && !this.stopRequested) {
          finalError = gatewayClose('gateway closed the session', info);
          this.logger.warn({ reason: info.reason, message: info.message }, 'the gateway closed the session and said not to reconnect');
          break;
        }
        lastError = `session closed: ${info.reason}`;
        this.logger.warn({ reason: info.reason, message: info.message }, 'session closed');
      } catch (err) {
        if (isQuicgateError(err, 'QG_ERR_REJECTED') && err.details?.retry === false) {
          finalError = err;
          this.logger.warn({ reason: err.details.reason, err: err.message }, 'the gateway refused the session and said not to reconnect');
          break;
        }
        if (isQuicgateError(err, 'QG_ERR_TLS')) {
          finalError = err;
          this.logger.error({ err: err.message }, 'the gateway certificate does not verify; not reconnecting (check ca_file / pinned_cert_hashes)');
          break;
        }
        lastError = err instanceof Error ? err.message : String(err);
        this.logger.warn({ err: lastError }, 'connect failed');
      }
      if (this.stopRequested) break;
      // A new local path: the old session is resumed on it at once (the gateway still has it).
      if (this.pathChanged) continue;
      if (this.backoff.exhausted) {
        finalError = new QuicgateError('QG_ERR_CONNECT_FAILED', `giving up after ${this.backoff.attempts} attempts: ${lastError}`);
        break;
      }
      const delayMs = this.backoff.next();
      this.setState({ kind: 'waiting', attempt: this.backoff.attempts, delayMs, lastError });
      this.logger.info({ delayMs: Math.round(delayMs), attempt: this.backoff.attempts }, 'reconnecting');
      await this.sleep(delayMs);
    }
    await this.teardown();
    this.setState({ kind: 'stopped', error: finalError });
    return finalError;
  }

  /** Close the session cleanly (the gateway frees its state at once) and end run(). */
  async stop(): Promise<void> {
    this.stopRequested = true;
    this.connection?.close({ reason: 'client_closed', message: 'client stopped' });
    this.wake?.();
  }

  private async connectOnce(): Promise<CloseInfo> {
    const connection = await this.parts.connect({
      config: this.config,
      previousAddresses: this.addresses,
      resume: this.resume,
      logger: this.logger,
    });
    this.connection = connection;
    let monitor: KeepaliveMonitor | null = null;
    let unwatch: (() => void) | null = null;
    const probe: { timer: TimerHandle | null } = { timer: null };
    try {
      if (this.stopRequested) {
        connection.close({ reason: 'client_closed', message: 'client stopped' });
        return await connection.closed;
      }
      const assignment = await this.awaitAssignment(connection);
      const tun = await this.bringUpTun(assignment, connection.maxDatagramBytes);
      this.addresses = [assignment.ipv4?.address, assignment.ipv6?.address].filter((a): a is string => !!a);
      this.resume = assignment.resumeSecret === undefined ? null : { sessionId: assignment.sessionId, secret: assignment.resumeSecret };
      this.forwarder.setConnection(connection);
      monitor = new KeepaliveMonitor(
        this.clock,
        connection,
        assignment.keepaliveMs,
        this.config.deadAfterMissedKeepalives,
        (silentForMs) => connection.close({ reason: 'connection_lost', message: `no answer for ${Math.round(silentForMs)} ms` }),
      );
      const m = monitor;
      this.forwarder.onHeard = () => {
        m.lastHeard = this.clock.now();
      };
      connection.setControlHandler((message) => this.onControl(message, m));
      monitor.start();
      unwatch =
        this.parts.watchPath?.(() => {
          if (probe.timer !== null) return;
          // QUIC may have migrated the connection to the new path: an answer within the probe keeps it.
          const sentAt = this.clock.now();
          this.logger.info({ probeMs: PATH_PROBE_MS }, 'local addresses changed; probing the path');
          connection.sendControl({ type: 'keepalive', t: sentAt });
          probe.timer = this.clock.setTimeout(() => {
            probe.timer = null;
            if (m.lastHeard > sentAt) return;
            this.pathChanged = true;
            connection.close({ reason: 'connection_lost', message: `local addresses changed and the gateway did not answer within ${PATH_PROBE_MS} ms` });
          }, PATH_PROBE_MS);
        }) ?? null;
      this.backoff.reset();
      this.setState({ kind: 'up', assignment, since: this.clock.wallNow() });
      this.logger.info(
        { ipv4: assignment.ipv4?.address, ipv6: assignment.ipv6?.address, transport: connection.kind, mtu: tun.mtu, ipv4Mtu: tun.ipv4Mtu ?? tun.mtu, session: assignment.sessionId },
        'tunnel up',
      );
      return await connection.closed;
    } finally {
      unwatch?.();
      probe.timer?.cancel();
      monitor?.stop();
      this.forwarder.setConnection(null);
      this.forwarder.onHeard = () => {};
      this.connection = null;
      connection.close({ reason: 'client_closed' });
    }
  }

  private onControl(message: ControlMessage, monitor: KeepaliveMonitor): void {
    if (message.type === 'keepalive_ack') monitor.acknowledged(message.t);
    else if (message.type === 'keepalive') this.connection?.sendControl({ type: 'keepalive_ack', t: message.t });
  }

  private awaitAssignment(connection: TunnelConnection): Promise<AssignControl> {
    const timeoutMs = this.parts.assignTimeoutMs ?? 10_000;
    return new Promise<AssignControl>((resolve, reject) => {
      let timer: TimerHandle | null = null;
      const settle = (fn: () => void): void => {
        timer?.cancel();
        timer = null;
        fn();
      };
      timer = this.clock.setTimeout(() => {
        settle(() => reject(new QuicgateError('QG_ERR_PROTOCOL', `no assignment from the gateway within ${timeoutMs} ms`)));
        connection.close({ reason: 'error', message: 'no assignment' });
      }, timeoutMs);
      connection.setControlHandler((message) => {
        if (message.type === 'assign') settle(() => resolve(message));
        else if (message.type === 'close') {
          settle(() => reject(gatewayClose('gateway refused the session', message)));
        }
      });
      void connection.closed.then((info) =>
        settle(() =>
          reject(
            info.refused
              ? rejectedError(info.refused, connection.kind)
              : info.retry === false
              ? gatewayClose('gateway refused the session', info)
              : new QuicgateError('QG_ERR_CONNECT_FAILED', `session closed before assignment: ${info.reason}`),
          ),
        ),
      );
    });
  }

  /** Returns the TUN's settings. */
  private async bringUpTun(assignment: AssignControl, datagramBytes: number): Promise<TunSettings> {
    const settings = clientTunSettings(this.config, assignment, datagramBytes);
    const key = JSON.stringify(settings);
    if (this.tun !== null && key === this.tunKey) return settings;
    await this.closeTun();
    // System settings first: the host route to the gateway must be read before tunnel routes exist.
    if (this.parts.applySystem) this.undoSystem = await this.parts.applySystem(assignment);
    this.tun = await this.parts.openTun(settings);
    this.tunKey = key;
    this.forwarder.setTun(this.tun);
    return settings;
  }

  private async closeTun(): Promise<void> {
    const undo = this.undoSystem;
    this.undoSystem = null;
    await undo?.().catch((err: unknown) => this.logger.warn({ err }, 'undoing system settings failed'));
    const tun = this.tun;
    this.tun = null;
    this.forwarder.setTun(null);
    await tun?.close();
  }

  private async teardown(): Promise<void> {
    await this.closeTun();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = this.clock.setTimeout(() => {
        this.wake = null;
        resolve();
      }, ms);
      this.wake = () => {
        timer.cancel();
        this.wake = null;
        resolve();
      };
    });
  }

  private setState(state: ClientState): void {
    this.state = state;
    for (const listener of this.listeners) listener(state);
  }
}

/**
 * The gateway's close as an error: QG_ERR_REJECTED with the reason in the message and the gateway's `retry`
 * in the details (run() ends on retry false; the CLI exits 3 for QG_ERR_REJECTED).
 */
function gatewayClose(what: string, info: { readonly reason: string; readonly message?: string | undefined; readonly retry?: boolean | undefined }): QuicgateError {
  const retry = info.retry ?? true;
  return new QuicgateError('QG_ERR_REJECTED', `${what}: ${info.reason}${info.message ? ` (${info.message})` : ''}${retry ? '' : '; not reconnecting'}`, {
    details: { reason: info.reason, retry },
  });
}

/**
 * The client's TUN: the gateway's MTU, lowered further when this side's datagrams are smaller (HTTP/3: the
 * client's QUIC datagram limit is 2 bytes below the gateway's), so what the client sends fits one datagram too.
 */
export function clientTunSettings(config: ClientConfig, assignment: AssignControl, datagramBytes: number): TunSettings {
  const addresses = [];
  if (assignment.ipv4) addresses.push({ cidr: `${assignment.ipv4.address}/${assignment.ipv4.prefix}` });
  if (assignment.ipv6) addresses.push({ cidr: `${assignment.ipv6.address}/${assignment.ipv6.prefix}` });
  const mtu = Math.min(assignment.mtu, sessionMtu(assignment.mtu, datagramBytes, assignment.ipv6 !== null));
  // IPv6 holds the device at >= 1280; IPv4 gets what one datagram carries whole, on its routes.
  const ipv4Mtu = Math.min(mtu, sessionMtu(assignment.mtu, datagramBytes, false));
  return { name: config.tunName, mtu, ...(assignment.ipv4 !== null && ipv4Mtu < mtu ? { ipv4Mtu } : {}), addresses, routes: assignment.routes.flatMap(splitDefault), txQueueLen: 4096, offload: config.tunOffload };
}

// A default route is installed as two halves, more specific than the existing default, which stays in place
// (and comes back by itself when the TUN goes away).
function splitDefault(route: string): string[] {
  if (route === '0.0.0.0/0') return ['0.0.0.0/1', '128.0.0.0/1'];
  if (route === '::/0') return ['::/1', '8000::/1'];
  return [route];
}
