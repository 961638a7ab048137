/**
 * Per-session forwarding state: the session's addresses as words for allocation-free comparison, its two
 * shaping queues (created on first use; served by the user's scheduler, user-scheduler.ts, while they hold
 * packets), and bookkeeping for per-batch work. Built once at connect; close() at session end takes the
 * queues out of the scheduler.
 */
import { ipv4ToWord, ipv6ToWords } from '../packet/ip.js';
import type { Session } from './session.js';
import type { ShapingQueue } from './shaper.js';

export class TunnelPeer {
  readonly hasV4: boolean;
  readonly v4: number;
  readonly hasV6: boolean;
  readonly v6: Int32Array;
  /** Next peer whose IPv6 address has the same low word (route table chain). */
  nextV6: TunnelPeer | null = null;
  /** Batch number in which this peer was last touched by the outbound path. */
  batchMark = 0;
  /** Shaping queues (out: TUN → client, in: client → TUN), created by the pipelines on first use. */
  outShaper: ShapingQueue | null = null;
  inShaper: ShapingQueue | null = null;

  constructor(readonly session: Session) {
    this.hasV4 = session.ipv4 !== null;
    this.v4 = session.ipv4 === null ? 0 : ipv4ToWord(session.ipv4);
    this.hasV6 = session.ipv6 !== null;
    this.v6 = new Int32Array(session.ipv6 === null ? [0, 0, 0, 0] : ipv6ToWords(session.ipv6));
  }

  /** Pending shaped packets outbound (0 when no queue exists yet). */
  get outboundPending(): number {
    return this.outShaper === null ? 0 : this.outShaper.pending;
  }

  get inboundPending(): number {
    return this.inShaper === null ? 0 : this.inShaper.pending;
  }

  /** Drop what waits in the queues and unlink them from the user's scheduler (its timer stops with the last). */
  close(): void {
    this.outShaper?.close();
    this.inShaper?.close();
    this.outShaper = null;
    this.inShaper = null;
  }
}
