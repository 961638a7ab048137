/**
 * Linux TUN device over the native addon (native/src/tun.cc).
 *
 * Flow: open() -> addon opens /dev/net/tun (name may contain %d; the kernel's choice is `name`) -> configureTun
 * -> onBatch(handler) hands the addon one Buffer + Uint32Array once -> per readable event the addon fills up to
 * `batchSize` packets and calls back with the count -> handler(batch) -> close() stops polling, then closes the fd.
 *
 * A handler that throws surfaces as an uncaught exception (like any event handler); reading continues if the
 * process survives. A read that fails for good (device deleted) throws QG_ERR_TUN_IO the same way.
 */
import { constants as osConstants } from 'node:os';
import { QuicgateError } from '../errors.js';
import { configureTun } from './configure.js';
import { createTunBatch, DEFAULT_TUN_BATCH_SIZE } from './device.js';
import type { TunBatch, TunBatchHandler, TunDevice, TunSettings } from './device.js';
import { loadTunAddon } from './native.js';
import type { NativeGroStats, NativeTun } from './native.js';

export interface LinuxTunOptions {
  /** Most packets handed to one handler call (default 64). */
  readonly batchSize?: number;
}

export interface TunStats {
  readBatches: number;
  readPackets: number;
  writtenPackets: number;
  /** Packets the kernel refused on write (queue full, device down, malformed). */
  writeDrops: number;
}

export class LinuxTun implements TunDevice {
  readonly name: string;
  readonly mtu: number;
  readonly superPackets: boolean;
  /** UDP super-packets too (USO4/USO6, kernel 6.2+). */
  readonly uso: boolean;
  readonly stats: TunStats = { readBatches: 0, readPackets: 0, writtenPackets: 0, writeDrops: 0 };
  private readonly handle: NativeTun;
  private readonly batch: TunBatch;
  private handler: TunBatchHandler | undefined;
  private closed = false;

  private constructor(handle: NativeTun, mtu: number, batchSize: number) {
    this.handle = handle;
    this.name = handle.name;
    this.mtu = mtu;
    this.superPackets = handle.tso;
    this.uso = handle.uso;
    this.batch = createTunBatch(mtu, batchSize, handle.tso);
  }

  /**
   * Creates the device in the caller's network namespace and configures it (addresses, MTU, routes, up).
   * Throws QG_ERR_NATIVE_MISSING, QG_ERR_TUN_OPEN (with errno text) or QG_ERR_TUN_CONFIGURE.
   */
  static async open(settings: TunSettings, options: LinuxTunOptions = {}): Promise<LinuxTun> {
    const batchSize = options.batchSize ?? DEFAULT_TUN_BATCH_SIZE;
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 4096) {
      throw new QuicgateError('QG_ERR_TUN_OPEN', `batchSize ${batchSize} is outside 1..4096`);
    }
    const addon = loadTunAddon();
    let handle: NativeTun;
    try {
      const offload = settings.offload ?? true;
      handle = new addon.Tun(settings.name, offload, offload);
    } catch (err) {
      throw new QuicgateError('QG_ERR_TUN_OPEN', `opening TUN "${settings.name}" failed: ${errorText(err)}`, {
        cause: err,
        details: { device: settings.name, errno: errnoOf(err) },
      });
    }
    try {
      await configureTun({ ...settings, name: handle.name });
    } catch (err) {
      handle.close();
      throw err;
    }
    return new LinuxTun(handle, settings.mtu, batchSize);
  }

  onBatch(handler: TunBatchHandler): void {
    if (this.closed) throw new QuicgateError('QG_ERR_CLOSED', `TUN ${this.name} is closed`);
    const started = this.handler !== undefined;
    this.handler = handler;
    if (!started) {
      const { data, lengths, stride, meta } = this.batch;
      this.handle.startReading(data, lengths, stride, (count) => this.deliver(count), meta);
    }
  }

  write(data: Uint8Array, offset: number, length: number): boolean {
    if (this.handle.write(data, offset, length) === 0) {
      this.stats.writtenPackets++;
      return true;
    }
    this.stats.writeDrops++;
    return false;
  }

  writeBatch(batch: TunBatch, status?: Uint8Array): number {
    const accepted = this.handle.writeBatch(batch.data, batch.lengths, batch.stride, batch.count, status);
    this.stats.writtenPackets += accepted;
    this.stats.writeDrops += batch.count - accepted;
    return accepted;
  }

  writeGso(data: Uint8Array, offset: number, length: number, kind: number, gsoSize: number): number {
    const errno = this.handle.writeGso(data, offset, length, kind, gsoSize);
    if (errno === 0) this.stats.writtenPackets++;
    else this.stats.writeDrops++;
    return errno;
  }

  /** Write-side coalescing so far (all zero and off when the kernel has no virtio headers on TUN). */
  groStats(): NativeGroStats {
    return this.handle.groStats();
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.handle.close();
    }
    return Promise.resolve();
  }

  private deliver(count: number): void {
    if (count < 0) {
      const errno = -count;
      throw new QuicgateError('QG_ERR_TUN_IO', `reading TUN ${this.name} failed: ${errnoName(errno)}; reading stopped`, {
        details: { device: this.name, errno },
      });
    }
    this.stats.readBatches++;
    this.stats.readPackets += count;
    this.batch.count = count;
    this.handler?.(this.batch);
  }
}

function errnoOf(err: unknown): number | undefined {
  const errno = (err as { errno?: unknown } | null)?.errno;
  return typeof errno === 'number' ? errno : undefined;
}

function errorText(err: unknown): string {
  const errno = errnoOf(err);
  const message = err instanceof Error ? err.message : String(err);
  return errno === undefined ? message : `${message} (${errnoName(errno)})`;
}

function errnoName(errno: number): string {
  const entry = Object.entries(osConstants.errno).find(([, value]) => value === errno);
  return entry === undefined ? `errno ${errno}` : entry[0];
}
