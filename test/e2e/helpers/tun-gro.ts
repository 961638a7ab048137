/**
 * e2e helper for the TUN write coalescing (native/src/gro.cc), run inside a network namespace:
 *   ip netns exec NS node --import tsx tun-gro.ts '{"coalesce":true}'
 *
 * It opens a LinuxTun (198.18.0.1/24, 2001:db8::1/64), listens with node:net on both addresses and plays the
 * PEER (198.18.0.2 / 2001:db8::2) by hand: every packet of the peer is built here (IP + TCP/UDP/ICMP headers,
 * real checksums) and written with tun.writeBatch; every packet the kernel sends back (SYN-ACKs, ACKs with
 * SACK blocks, echo replies) is read from the TUN and parsed. What the sockets received is compared with what
 * was sent, so a coalescing mistake (lost, duplicated, reordered or corrupted bytes; a gap papered over)
 * shows up as data that differs or an ACK number that is wrong.
 *
 * Protocol: one JSON command per stdin line {"id","cmd","args"}; one answer per command on stdout:
 *   {"event":"ready","name","gro"}                 device open, servers listening
 *   {"event":"result","id","result"}               the command's observations (see the scenario functions)
 *   {"event":"failed","id","message"}              the command threw
 *   {"event":"closed"}                             after stdin ends (then the process exits)
 * Commands: tcp-stream, tcp-gap, tcp-irregular, tcp-limits, tcp-corrupt, tcp-ae, udp, icmp, mixed (args below). Nothing is asserted here: the test does.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { ipv4ToWord, ipv6ToBytes } from '../../../src/packet/ip.js';
import { createTunBatch } from '../../../src/tun/device.js';
import type { TunBatch } from '../../../src/tun/device.js';
import { LinuxTun } from '../../../src/tun/linux.js';
import type { NativeGroStats } from '../../../src/tun/native.js';

type Family = 4 | 6;

interface HelperArgs {
  readonly coalesce: boolean;
}

const args = JSON.parse(process.argv[2] ?? '{}') as HelperArgs;
const report = (event: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(event)}\n`);

const MTU = 1500;
const TCP_PORT = 7001;
const HOSTS = {
  4: { local: '198.18.0.1', peer: '198.18.0.2' },
  6: { local: '2001:db8::1', peer: '2001:db8::2' },
} as const;

const TCP_SYN = 0x02;
const TCP_RST = 0x04;
const TCP_PSH = 0x08;
const TCP_ACK = 0x10;

// ---------------------------------------------------------------------------------------------------------
// Checksums and packet builders

function sum16(data: Uint8Array, start = 0, end = data.length, initial = 0): number {
  let sum = initial;
  let i = start;
  for (; i + 1 < end; i += 2) sum += (data[i]! << 8) | data[i + 1]!;
  if (i < end) sum += data[i]! << 8;
  return sum;
}

function finish(sum: number): number {
  let s = sum;
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return ~s & 0xffff;
}

function addressBytes(family: Family, text: string): Buffer {
  if (family === 6) return Buffer.from(ipv6ToBytes(text));
  const b = Buffer.alloc(4);
  b.writeInt32BE(ipv4ToWord(text));
  return b;
}

const ADDR = {
  4: { local: addressBytes(4, HOSTS[4].local), peer: addressBytes(4, HOSTS[4].peer) },
  6: { local: addressBytes(6, HOSTS[6].local), peer: addressBytes(6, HOSTS[6].peer) },
} as const;

/** Checksum of a TCP/UDP/ICMPv6 body with its pseudo-header (RFC 793 / RFC 8200 section 8.1). */
function transportChecksum(family: Family, src: Buffer, dst: Buffer, protocol: number, body: Buffer): number {
  const length = body.length;
  let sum = sum16(src) + sum16(dst) + protocol + (length >>> 16) + (length & 0xffff);
  sum = sum16(body, 0, body.length, sum);
  return finish(sum);
}

let ipId = 1;

/** IP header (IPv4 without options, DF, TTL 64 / IPv6 hop limit 64) in front of `body`, from the peer. */
function ipPacket(family: Family, protocol: number, body: Buffer): Buffer {
  const src = ADDR[family].peer;
  const dst = ADDR[family].local;
  if (family === 4) {
    const h = Buffer.alloc(20);
    h[0] = 0x45;
    h.writeUInt16BE(20 + body.length, 2);
    h.writeUInt16BE(ipId++ & 0xffff, 4);
    h.writeUInt16BE(0x4000, 6); // DF
    h[8] = 64;
    h[9] = protocol;
    src.copy(h, 12);
    dst.copy(h, 16);
    h.writeUInt16BE(finish(sum16(h)), 10);
    return Buffer.concat([h, body]);
  }
  const h = Buffer.alloc(40);
  h.writeUInt32BE(0x60000000, 0);
  h.writeUInt16BE(body.length, 4);
  h[6] = protocol;
  h[7] = 64;
  src.copy(h, 8);
  dst.copy(h, 24);
  return Buffer.concat([h, body]);
}

interface TcpFields {
  readonly sport: number;
  readonly dport: number;
  readonly seq: number;
  readonly ack: number;
  readonly flags: number;
  readonly window: number;
  readonly options: Buffer;
  readonly payload: Buffer;
}

function tcpPacket(family: Family, s: TcpFields): Buffer {
  if (s.options.length % 4 !== 0) throw new Error('TCP options must be padded to 4 bytes');
  const headerLength = 20 + s.options.length;
  const t = Buffer.alloc(headerLength + s.payload.length);
  t.writeUInt16BE(s.sport, 0);
  t.writeUInt16BE(s.dport, 2);
  t.writeUInt32BE(s.seq >>> 0, 4);
  t.writeUInt32BE(s.ack >>> 0, 8);
  t[12] = (headerLength / 4) << 4;
  t[13] = s.flags;
  t.writeUInt16BE(s.window, 14);
  s.options.copy(t, 20);
  s.payload.copy(t, headerLength);
  t.writeUInt16BE(transportChecksum(family, ADDR[family].peer, ADDR[family].local, 6, t), 16);
  return ipPacket(family, 6, t);
}

function udpPacket(family: Family, sport: number, dport: number, payload: Buffer): Buffer {
  const u = Buffer.alloc(8 + payload.length);
  u.writeUInt16BE(sport, 0);
  u.writeUInt16BE(dport, 2);
  u.writeUInt16BE(u.length, 4);
  payload.copy(u, 8);
  const sum = transportChecksum(family, ADDR[family].peer, ADDR[family].local, 17, u);
  u.writeUInt16BE(sum === 0 ? 0xffff : sum, 6);
  return ipPacket(family, 17, u);
}

function echoRequest(family: Family, id: number, seq: number, payload: Buffer): Buffer {
  const m = Buffer.alloc(8 + payload.length);
  m[0] = family === 4 ? 8 : 128;
  m.writeUInt16BE(id, 4);
  m.writeUInt16BE(seq, 6);
  payload.copy(m, 8);
  const sum = family === 4 ? finish(sum16(m)) : transportChecksum(6, ADDR[6].peer, ADDR[6].local, 58, m);
  m.writeUInt16BE(sum, 2);
  return ipPacket(family, family === 4 ? 1 : 58, m);
}

/** Offset of the transport header in an IP packet built here (IPv4 without options or IPv6 without extensions). */
const l4Offset = (packet: Buffer): number => (packet[0]! >> 4 === 4 ? (packet[0]! & 0x0f) * 4 : 40);

/** Recomputes the TCP/UDP checksum of a packet built here after its transport header or payload was changed. */
function refreshTransportChecksum(packet: Buffer): void {
  const family: Family = packet[0]! >> 4 === 4 ? 4 : 6;
  const protocol = family === 4 ? packet[9]! : packet[6]!;
  const l4 = l4Offset(packet);
  const offset = protocol === 6 ? 16 : 6;
  packet.writeUInt16BE(0, l4 + offset);
  const sum = transportChecksum(family, ADDR[family].peer, ADDR[family].local, protocol, packet.subarray(l4));
  packet.writeUInt16BE(protocol === 17 && sum === 0 ? 0xffff : sum, l4 + offset);
}

/** Deterministic, non-periodic bytes: byte k of stream `seed` (a reordered or repeated segment never matches). */
function pattern(seed: number, from: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = Math.imul((from + i) ^ Math.imul(seed, 0x9e3779b1), 0x85ebca6b) >>> 24;
  return b;
}

function firstDifference(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

// ---------------------------------------------------------------------------------------------------------
// What the kernel sends into the TUN, parsed

interface Seen {
  readonly family: Family;
  readonly protocol: number;
  /** Destination is the fake peer (everything the kernel sends here should be). */
  readonly toPeer: boolean;
  readonly checksumOk: boolean;
  readonly sport: number;
  readonly dport: number;
  readonly flags: number;
  readonly seq: number;
  readonly ack: number;
  readonly window: number;
  readonly payloadLength: number;
  readonly sack: [number, number][];
  readonly tsval: number | undefined;
  /** Window scale option (SYN-ACK only). */
  readonly wscale: number | undefined;
  readonly icmpType: number;
  readonly icmpId: number;
  readonly icmpSeq: number;
  readonly icmpPayload: Buffer | undefined;
}

const seen: Seen[] = [];

function parse(packet: Buffer): Seen | undefined {
  const version = packet[0]! >> 4;
  let family: Family;
  let protocol: number;
  let l4: number;
  let end: number;
  if (version === 4) {
    family = 4;
    l4 = (packet[0]! & 0x0f) * 4;
    protocol = packet[9]!;
    end = packet.readUInt16BE(2);
  } else if (version === 6) {
    family = 6;
    l4 = 40;
    protocol = packet[6]!;
    end = 40 + packet.readUInt16BE(4);
  } else {
    return undefined;
  }
  if (end > packet.length) return undefined;
  const src = family === 4 ? packet.subarray(12, 16) : packet.subarray(8, 24);
  const dst = family === 4 ? packet.subarray(16, 20) : packet.subarray(24, 40);
  const body = packet.subarray(l4, end);
  const toPeer = dst.equals(ADDR[family].peer);
  const base: Omit<Seen, 'checksumOk'> = {
    family,
    protocol,
    toPeer,
    sport: 0,
    dport: 0,
    flags: 0,
    seq: 0,
    ack: 0,
    window: 0,
    payloadLength: 0,
    sack: [],
    tsval: undefined,
    wscale: undefined,
    icmpType: -1,
    icmpId: 0,
    icmpSeq: 0,
    icmpPayload: undefined,
  };
  if (protocol === 6 && body.length >= 20) {
    const headerLength = (body[12]! >> 4) * 4;
    const sack: [number, number][] = [];
    let tsval: number | undefined;
    let wscale: number | undefined;
    for (let o = 20; o < headerLength; ) {
      const kind = body[o]!;
      if (kind === 0) break;
      if (kind === 1) {
        o++;
        continue;
      }
      const len = body[o + 1]!;
      if (len < 2) break;
      if (kind === 5) for (let k = o + 2; k + 8 <= o + len; k += 8) sack.push([body.readUInt32BE(k), body.readUInt32BE(k + 4)]);
      if (kind === 8 && len === 10) tsval = body.readUInt32BE(o + 2);
      if (kind === 3 && len === 3) wscale = body[o + 2]!;
      o += len;
    }
    return {
      ...base,
      checksumOk: transportChecksum(family, Buffer.from(src), Buffer.from(dst), 6, body) === 0,
      sport: body.readUInt16BE(0),
      dport: body.readUInt16BE(2),
      seq: body.readUInt32BE(4),
      ack: body.readUInt32BE(8),
      flags: body[13]!,
      window: body.readUInt16BE(14),
      payloadLength: body.length - headerLength,
      sack,
      tsval,
      wscale,
    };
  }
  if ((protocol === 1 || protocol === 58) && body.length >= 8) {
    const checksumOk = protocol === 1 ? finish(sum16(body)) === 0 : transportChecksum(6, Buffer.from(src), Buffer.from(dst), 58, body) === 0;
    return {
      ...base,
      checksumOk,
      icmpType: body[0]!,
      icmpId: body.readUInt16BE(4),
      icmpSeq: body.readUInt16BE(6),
      icmpPayload: Buffer.from(body.subarray(8)),
    };
  }
  return { ...base, checksumOk: true };
}

// ---------------------------------------------------------------------------------------------------------
// Device, servers, writing

const tun = await LinuxTun.open({
  name: 'qgg%d',
  mtu: MTU,
  addresses: [{ cidr: `${HOSTS[4].local}/24` }, { cidr: `${HOSTS[6].local}/64` }],
  routes: [],
  offload: args.coalesce,
});

tun.onBatch((batch: TunBatch) => {
  for (let i = 0; i < batch.count; i++) {
    const start = i * batch.stride;
    const parsed = parse(batch.data.subarray(start, start + batch.lengths[i]!));
    if (parsed !== undefined) seen.push(parsed);
  }
});

/** Bytes each accepted TCP connection received, by "family:peerPort". */
const streams = new Map<string, { chunks: Buffer[]; length: number; socket: Socket }>();
const sockets = new Set<Socket>();

function tcpServer(family: Family): Promise<Server> {
  const server = createServer((socket) => {
    sockets.add(socket);
    const key = `${socket.remoteFamily === 'IPv6' ? 6 : 4}:${socket.remotePort}`;
    const entry = { chunks: [] as Buffer[], length: 0, socket };
    streams.set(key, entry);
    socket.on('data', (chunk: Buffer) => {
      entry.chunks.push(chunk);
      entry.length += chunk.length;
    });
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: TCP_PORT, host: HOSTS[family].local, ipv6Only: family === 6 }, () => resolve(server));
  });
}

const servers = [await tcpServer(4), await tcpServer(6)];

// More slots than TunWriter uses (64), so a batch can exceed the coalescer's 64 members per group.
const stage = createTunBatch(MTU, 128);

interface WriteResult {
  readonly accepted: number;
  readonly count: number;
  readonly status: number[];
}

/** One writeBatch of `packets` from our own staging batch; status starts at 2 so untouched slots show. */
function writeAll(packets: readonly Buffer[]): WriteResult {
  if (packets.length > stage.lengths.length) throw new Error(`at most ${stage.lengths.length} packets per batch`);
  stage.count = 0;
  for (const p of packets) {
    if (p.length > stage.stride) throw new Error(`packet of ${p.length} bytes exceeds the stride ${stage.stride}`);
    p.copy(stage.data, stage.count * stage.stride);
    stage.lengths[stage.count++] = p.length;
  }
  const status = new Uint8Array(packets.length).fill(2);
  const accepted = tun.writeBatch(stage, status);
  return { accepted, count: packets.length, status: Array.from(status) };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what: string, cond: () => boolean, timeoutMs = 5_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) {
      report({ event: 'note', message: `timed out waiting for ${what}` });
      return false;
    }
    await sleep(5);
  }
  return true;
}

/** Error counters of this namespace (the kernel counts bad checksums and headers here). */
function errorCounters(): Record<string, number> {
  const out: Record<string, number> = {};
  const snmp = readFileSync('/proc/net/snmp', 'utf8').split('\n');
  for (let i = 0; i + 1 < snmp.length; i += 2) {
    const names = snmp[i]!.split(/\s+/);
    const values = snmp[i + 1]!.split(/\s+/);
    const group = names[0]!.replace(':', '');
    names.forEach((name, k) => {
      if (k > 0 && /Err|Csum|Discards/.test(name)) out[`${group}${name}`] = Number(values[k]);
    });
  }
  for (const line of readFileSync('/proc/net/snmp6', 'utf8').split('\n')) {
    const [name, value] = line.trim().split(/\s+/);
    if (name !== undefined && /^(Ip6|Udp6|Icmp6)/.test(name) && /Err|Csum|Discards/.test(name)) out[name] = Number(value);
  }
  return out;
}

function counterIncreases(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, value] of Object.entries(after)) if (value !== (before[name] ?? 0)) out[name] = value - (before[name] ?? 0);
  return out;
}

interface GroDelta {
  readonly superPackets: number;
  readonly coalescedPackets: number;
}

function groDelta(before: NativeGroStats, after: NativeGroStats): GroDelta {
  return { superPackets: after.superPackets - before.superPackets, coalescedPackets: after.coalescedPackets - before.coalescedPackets };
}

/** Every TCP/ICMP packet the kernel sent us so far had a valid checksum (the read path completes partial ones). */
const badChecksums = (): number => seen.filter((s) => !s.checksumOk).length;

/** What a measured write waits for once the batch is written. */
interface Awaited {
  /** Named in a note if it times out. */
  readonly what: string;
  readonly done: () => boolean;
  /** until()'s default unless given. */
  readonly timeoutMs?: number;
  /** Then this long more, so that what must NOT arrive (more data, a higher ACK, a dropped datagram) would show up. */
  readonly settleMs?: number;
}

/** One measured writeBatch: its result, what it moved in the GRO counters, and the kernel's error counters before it. */
interface Measured {
  readonly write: WriteResult;
  readonly gro: GroDelta;
  readonly groAfter: NativeGroStats;
  readonly counters: Record<string, number>;
}

/** writeAll(packets) between two readings of the GRO counters (after one of the error counters); then waits for `awaited`. */
async function writeMeasured(packets: readonly Buffer[], awaited: Awaited): Promise<Measured> {
  const counters = errorCounters();
  const groBefore = tun.groStats();
  const write = writeAll(packets);
  const groAfter = tun.groStats();
  await until(awaited.what, awaited.done, awaited.timeoutMs);
  if (awaited.settleMs !== undefined) await sleep(awaited.settleMs);
  return { write, gro: groDelta(groBefore, groAfter), groAfter, counters };
}

/** Error counters of this namespace that grew since just before the measured write (read now). */
const errorsSince = (m: Measured): Record<string, number> => counterIncreases(m.counters, errorCounters());

/** The write and the GRO counters it moved, as a result reports them. */
const written = (m: Measured): { write: WriteResult; gro: GroDelta } => ({ write: m.write, gro: m.gro });

// ---------------------------------------------------------------------------------------------------------
// The fake TCP peer

let nextPeerPort = 40_000;

interface ConnectOptions {
  readonly isn: number;
  readonly timestamps?: boolean;
  readonly sack?: boolean;
}

class FakePeer {
  readonly port = nextPeerPort++;
  /** Next sequence number to send. */
  seq: number;
  /** Next sequence number expected from the server (what we acknowledge). */
  rcvNext = 0;
  synAckWindow = 0;
  /** The server's window scale (from its SYN-ACK). */
  serverScale = 0;
  /** Window field of the segments we send. */
  window = 0xffff;
  private tsecr: number | undefined;
  private readonly tsval = 0x10000;

  constructor(
    readonly family: Family,
    readonly isn: number,
    readonly timestamps: boolean,
  ) {
    this.seq = isn;
  }

  get key(): string {
    return `${this.family}:${this.port}`;
  }

  /** Bytes sent so far (relative sequence number of the next byte). */
  get sent(): number {
    return (this.seq - this.isn - 1) >>> 0;
  }

  private options(): Buffer {
    if (!this.timestamps || this.tsecr === undefined) return Buffer.alloc(0);
    const o = Buffer.from([1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0]);
    o.writeUInt32BE(this.tsval, 4);
    o.writeUInt32BE(this.tsecr, 8);
    return o;
  }

  syn(sack: boolean): Buffer {
    const options = [Buffer.from([2, 4, 0x05, 0xb4]), Buffer.from([1, 3, 3, 7])];
    if (sack) options.push(Buffer.from([1, 1, 4, 2]));
    if (this.timestamps) {
      const ts = Buffer.from([1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0]);
      ts.writeUInt32BE(this.tsval, 4);
      options.push(ts);
    }
    return this.packet(TCP_SYN, Buffer.alloc(0), this.isn, Buffer.concat(options), 0);
  }

  synAcked(synAck: Seen): void {
    this.seq = (this.isn + 1) >>> 0;
    this.rcvNext = (synAck.seq + 1) >>> 0;
    this.synAckWindow = synAck.window;
    this.serverScale = synAck.wscale ?? 0;
    this.tsecr = synAck.tsval;
  }

  ack(): Buffer {
    return this.packet(TCP_ACK, Buffer.alloc(0), this.seq);
  }

  /** The next data segment: `length` bytes of this flow's pattern at the current offset. */
  data(length: number, flags = TCP_ACK): Buffer {
    const segment = this.dataAt(this.sent, length, flags);
    this.seq = (this.seq + length) >>> 0;
    return segment;
  }

  /** A data segment at relative offset `offset` (does not move `seq`). */
  dataAt(offset: number, length: number, flags = TCP_ACK): Buffer {
    return this.packet(flags, pattern(this.port, offset, length), (this.isn + 1 + offset) >>> 0);
  }

  rst(): Buffer {
    return this.packet(TCP_RST | TCP_ACK, Buffer.alloc(0), this.seq);
  }

  expected(length = this.sent): Buffer {
    return pattern(this.port, 0, length);
  }

  private packet(flags: number, payload: Buffer, seq: number, options = this.options(), ack = this.rcvNext): Buffer {
    return tcpPacket(this.family, { sport: this.port, dport: TCP_PORT, seq, ack, flags, window: this.window, options, payload });
  }

  /** Segments the server sent to this peer. */
  fromServer(): Seen[] {
    return seen.filter((s) => s.family === this.family && s.protocol === 6 && s.dport === this.port && s.sport === TCP_PORT);
  }

  /** Relative ACK number of the server's latest segment (bytes acknowledged), or -1. */
  lastAck(): number {
    const last = this.fromServer().at(-1);
    return last === undefined ? -1 : (last.ack - this.isn - 1) >>> 0;
  }

  /** Bytes the server's latest segment allows beyond what it acknowledged (scaled window). */
  lastWindow(): number {
    const last = this.fromServer().at(-1);
    return last === undefined ? 0 : last.window * 2 ** this.serverScale;
  }

  /** SACK blocks of the server's latest segment, relative. */
  lastSack(): [number, number][] {
    const last = this.fromServer().at(-1);
    return (last?.sack ?? []).map(([l, r]) => [(l - this.isn - 1) >>> 0, (r - this.isn - 1) >>> 0]);
  }

  received(): Buffer {
    const entry = streams.get(this.key);
    return entry === undefined ? Buffer.alloc(0) : Buffer.concat(entry.chunks);
  }

  receivedLength(): number {
    return streams.get(this.key)?.length ?? 0;
  }

  /** The server socket holds `length` bytes (by default all sent so far) and its latest ACK is exactly there. */
  receivedAndAcked(length = this.sent): boolean {
    return this.receivedLength() >= length && this.lastAck() === length;
  }

  /** What the server socket holds compared with what was sent so far (or the first `length` bytes). */
  delivery(length = this.sent): { expected: number; received: number; firstDifference: number } {
    const got = this.received();
    return { expected: length, received: got.length, firstDifference: firstDifference(got, this.expected(length)) };
  }

  /** delivery(length) with the server's latest ACK. */
  deliveryAcked(length = this.sent): ReturnType<FakePeer['delivery']> & { lastAck: number } {
    return { ...this.delivery(length), lastAck: this.lastAck() };
  }

  /** deliveryAcked(length) with the server's latest SACK blocks. */
  deliverySacked(length = this.sent): ReturnType<FakePeer['deliveryAcked']> & { lastSack: [number, number][] } {
    return { ...this.deliveryAcked(length), lastSack: this.lastSack() };
  }
}

async function connect(family: Family, options: ConnectOptions): Promise<FakePeer> {
  const peer = new FakePeer(family, options.isn >>> 0, options.timestamps ?? false);
  const sent = writeAll([peer.syn(options.sack ?? false)]);
  if (sent.accepted !== 1) throw new Error(`SYN refused by the TUN: ${JSON.stringify(sent)}`);
  const isSynAck = (s: Seen): boolean => (s.flags & (TCP_SYN | TCP_ACK)) === (TCP_SYN | TCP_ACK);
  if (!(await until('SYN-ACK', () => peer.fromServer().some(isSynAck)))) throw new Error(`no SYN-ACK for peer port ${peer.port}`);
  peer.synAcked(peer.fromServer().find(isSynAck)!);
  writeAll([peer.ack()]);
  if (!(await until('accept', () => streams.has(peer.key)))) throw new Error(`server never accepted peer port ${peer.port}`);
  return peer;
}

/** Ends a connection without a FIN exchange (keeps later scenarios free of retransmissions). */
function abort(peer: FakePeer): void {
  writeAll([peer.rst()]);
  streams.get(peer.key)?.socket.destroy();
}

/** Waits for all `peer` sent so far to be in the server socket and acknowledged. */
const allOf = (peer: FakePeer, what: string, settleMs?: number): Awaited => ({ what, done: () => peer.receivedAndAcked(), settleMs });

/** A TCP scenario's result: `fields`, the errors counted since `m` and the bad checksums seen; then `peers` are aborted. */
function finishTcp(m: Measured, fields: Record<string, unknown>, ...peers: FakePeer[]): Record<string, unknown> {
  const result = { ...fields, errors: errorsSince(m), badChecksums: badChecksums() };
  for (const peer of peers) abort(peer);
  return result;
}

/** The segment at `offset` alone (the one left out or dropped); then the whole stream, acknowledged. */
async function refill(peer: FakePeer, offset: number, size: number, what: string): Promise<WriteResult> {
  return (await writeMeasured([peer.dataAt(offset, size)], allOf(peer, what, 100))).write;
}

// ---------------------------------------------------------------------------------------------------------
// Scenarios

interface TcpStreamArgs {
  readonly family: Family;
  readonly segments: number;
  readonly size: number;
  readonly tail: number;
  readonly isn: number;
  readonly timestamps?: boolean;
}

/** Handshake, then `segments` full segments + one short PSH segment in ONE writeBatch. */
async function tcpStream(a: TcpStreamArgs): Promise<Record<string, unknown>> {
  const peer = await connect(a.family, { isn: a.isn, timestamps: a.timestamps ?? false });
  const packets: Buffer[] = [];
  for (let i = 0; i < a.segments; i++) packets.push(peer.data(a.size));
  packets.push(peer.data(a.tail, TCP_ACK | TCP_PSH));
  const m = await writeMeasured(packets, allOf(peer, 'stream delivered and acknowledged', 150)); // nothing more may arrive
  return finishTcp(
    m,
    {
      ...written(m),
      groStats: m.groAfter,
      synAckWindow: peer.synAckWindow,
      delivery: peer.delivery(),
      lastAck: peer.lastAck(),
      packetLengths: [...new Set(packets.map((p) => p.length))],
    },
    peer,
  );
}

interface TcpGapArgs {
  readonly family: Family;
  readonly segments: number;
  readonly size: number;
  readonly missing: number;
}

/**
 * Two flows A and B interleaved in one batch (A0 B0 A1 B1 ...), A's segment `missing` left out: A may deliver
 * only up to the gap and must acknowledge exactly that (with a SACK block for what came after it); B all.
 * Then the missing segment alone: A's whole stream, acknowledged to the end.
 */
async function tcpGap(a: TcpGapArgs): Promise<Record<string, unknown>> {
  const flowA = await connect(a.family, { isn: 1000, sack: true });
  // B's sequence numbers wrap around 2^32 inside its super-packet.
  const flowB = await connect(a.family, { isn: 0xffffffff - 3 * a.size, sack: true });
  const packets: Buffer[] = [];
  const missingAt = a.missing * a.size;
  for (let i = 0; i < a.segments; i++) {
    const segA = flowA.data(a.size);
    if (i !== a.missing) packets.push(segA);
    packets.push(flowB.data(a.size));
  }
  const total = flowA.sent;
  const m = await writeMeasured(packets, {
    what: 'both flows up to the gap',
    done: () => flowA.receivedLength() >= missingAt && flowA.lastSack().length > 0 && flowB.receivedAndAcked(),
    settleMs: 300, // a papered-over gap would show up now as more data or a higher ACK
  });
  const beforeFill = { a: flowA.deliverySacked(missingAt), b: flowB.deliveryAcked() };
  const fill = await refill(flowA, missingAt, a.size, 'A complete');
  const expected = { gapAt: missingAt, afterGap: [missingAt + a.size, total], totalA: total, totalB: flowB.sent };
  return finishTcp(m, { ...written(m), expected, beforeFill, fill, afterFill: { a: flowA.deliverySacked() } }, flowA, flowB);
}

interface TcpIrregularArgs {
  readonly family: Family;
  readonly segments: number;
  readonly size: number;
  readonly duplicate: number;
  readonly duplicateAfter: number;
  readonly windowChangeAt: number;
}

/**
 * One flow whose batch cannot be one super-packet: segment `duplicate` is sent again (a retransmission) after
 * segment `duplicateAfter`, and the window field changes from segment `windowChangeAt` on. The stream must
 * still arrive exactly once, in order.
 */
async function tcpIrregular(a: TcpIrregularArgs): Promise<Record<string, unknown>> {
  const peer = await connect(a.family, { isn: 0x5000, timestamps: a.family === 4 });
  const packets: Buffer[] = [];
  for (let i = 0; i < a.segments; i++) {
    if (i === a.windowChangeAt) peer.window = 0xfff0;
    packets.push(peer.data(a.size, i === a.segments - 1 ? TCP_ACK | TCP_PSH : TCP_ACK));
    if (i === a.duplicateAfter) packets.push(peer.dataAt(a.duplicate * a.size, a.size));
  }
  const m = await writeMeasured(packets, allOf(peer, 'irregular stream delivered', 150));
  return finishTcp(m, { ...written(m), delivery: peer.delivery(), lastAck: peer.lastAck() }, peer);
}

interface TcpLimitsArgs {
  readonly family: Family;
  readonly smallSegments: number;
  readonly smallSize: number;
  readonly size: number;
}

/**
 * The coalescer's limits: `smallSegments` (> 64) small segments in one batch need more than one group (at most
 * 64 members each); then, once the server's window has grown, as many full segments as the window takes (up
 * to 100), more than fit one 64 KB IP packet. Both batches must arrive exactly.
 */
async function tcpLimits(a: TcpLimitsArgs): Promise<Record<string, unknown>> {
  const peer = await connect(a.family, { isn: 0xfffe0000 });
  const segments = (count: number, size: number): Buffer[] => Array.from({ length: count }, () => peer.data(size));
  // Read first, its error counters stand for all three steps (the result's `errors`).
  const small = await writeMeasured(segments(a.smallSegments, a.smallSize), allOf(peer, 'small segments'));
  // Grow the server's window: a few batches of full segments, each within the window offered.
  for (let round = 0; round < 20 && peer.lastWindow() < 100 * a.size; round++) {
    const fit = Math.min(40, Math.floor(peer.lastWindow() / a.size));
    await writeMeasured(segments(fit, a.size), allOf(peer, 'growing the window', 20));
  }
  const window = peer.lastWindow();
  const fit = Math.min(100, Math.floor(window / a.size));
  const large = await writeMeasured(segments(fit, a.size), allOf(peer, 'large batch', 150));
  return finishTcp(
    small,
    {
      small: written(small),
      large: { ...written(large), window, segments: fit, bytes: fit * a.size },
      delivery: peer.delivery(),
      lastAck: peer.lastAck(),
    },
    peer,
  );
}

interface TcpCorruptArgs {
  readonly family: Family;
  readonly segments: number;
  readonly size: number;
  readonly isn: number;
  readonly corrupt: number;
  /** payload: one payload byte flipped after the TCP checksum was computed; ip-checksum: a wrong IPv4 header checksum. */
  readonly how: 'payload' | 'ip-checksum';
}

/**
 * One flow of `segments` segments in ONE batch, segment `corrupt` damaged after its checksums were computed
 * (`how`). The kernel must drop that segment (and count it): the socket gets exactly the bytes before it, the
 * ACK stops there and SACK names the segments after it (queued out of order, not delivered). Then the good
 * segment alone: the whole stream, byte-exact, acknowledged to the end.
 */
async function tcpCorrupt(a: TcpCorruptArgs): Promise<Record<string, unknown>> {
  if (a.how === 'ip-checksum' && a.family !== 4) throw new Error('only IPv4 has a header checksum');
  const peer = await connect(a.family, { isn: a.isn, sack: true });
  const packets: Buffer[] = [];
  for (let i = 0; i < a.segments; i++) packets.push(peer.data(a.size, i === a.segments - 1 ? TCP_ACK | TCP_PSH : TCP_ACK));
  const bad = packets[a.corrupt]!;
  if (a.how === 'payload') {
    const at = bad.length - a.size + Math.floor(a.size / 3);
    bad[at] = bad[at]! ^ 0x5a;
  } else {
    bad.writeUInt16BE(bad.readUInt16BE(10) ^ 0x0101, 10);
  }
  const corruptAt = a.corrupt * a.size;
  const total = peer.sent;
  const m = await writeMeasured(packets, {
    what: 'the stream up to the corrupt segment, what follows it SACKed',
    done: () => peer.receivedAndAcked(corruptAt) && peer.lastSack().length > 0,
    settleMs: 300, // data behind the dropped segment jumping the gap would show up now
  });
  const beforeFill = { ...peer.deliverySacked(corruptAt), errors: errorsSince(m) };
  const fill = await refill(peer, corruptAt, a.size, 'the stream complete');
  const expected = { corruptAt, afterCorrupt: [corruptAt + a.size, total], total };
  return finishTcp(m, { ...written(m), expected, beforeFill, fill, afterFill: peer.deliverySacked() }, peer);
}

interface TcpAeArgs {
  readonly family: Family;
  readonly segments: number;
  readonly size: number;
  readonly isn: number;
  /** Which segments carry the AE flag (bit 0 of TCP header byte 12, AccECN), checksums recomputed. */
  readonly ae: 'none' | 'second-half' | 'alternate';
}

/** One flow of `segments` full segments (the last with PSH) in ONE batch, some with the AE flag set. */
async function tcpAe(a: TcpAeArgs): Promise<Record<string, unknown>> {
  const peer = await connect(a.family, { isn: a.isn });
  const packets: Buffer[] = [];
  const marked: number[] = [];
  for (let i = 0; i < a.segments; i++) {
    const p = peer.data(a.size, i === a.segments - 1 ? TCP_ACK | TCP_PSH : TCP_ACK);
    const mark = a.ae === 'second-half' ? i >= a.segments / 2 : a.ae === 'alternate' ? i % 2 === 1 : false;
    if (mark) {
      p[l4Offset(p) + 12] = p[l4Offset(p) + 12]! | 0x01;
      refreshTransportChecksum(p);
      marked.push(i);
    }
    packets.push(p);
  }
  const m = await writeMeasured(packets, allOf(peer, 'the stream delivered and acknowledged', 150));
  return finishTcp(m, { ...written(m), marked, delivery: peer.delivery(), lastAck: peer.lastAck() }, peer);
}

let nextUdpPort = 7100;

async function udpSocket(family: Family): Promise<{ socket: UdpSocket; port: number; messages: { data: Buffer; from: number }[] }> {
  const socket = createSocket(family === 4 ? 'udp4' : 'udp6');
  const port = nextUdpPort++;
  const messages: { data: Buffer; from: number }[] = [];
  socket.on('message', (data, rinfo) => messages.push({ data, from: rinfo.port }));
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, HOSTS[family].local, () => resolve());
  });
  return { socket, port, messages };
}

/** Datagram i: its index in the first 4 bytes, then pattern bytes. */
function datagram(seed: number, index: number, size: number): Buffer {
  const d = pattern(seed * 1000 + index, 0, size);
  d.writeUInt32BE(index, 0);
  return d;
}

interface UdpArgs {
  readonly family: Family;
  readonly count: number;
  readonly size: number;
  readonly last: number;
  /** Datagrams sent with checksum field 0 ("no checksum": allowed over IPv4, invalid over IPv6): all, or one index. */
  readonly zeroChecksum?: 'all' | number;
  /**
   * Payload bytes 4-5 of those datagrams chosen so their correct checksum is 0xffff (negative zero): a field of
   * 0 then passes a plain ones' complement verification, though over IPv6 the kernel must still drop it.
   */
  readonly zeroSumsToFfff?: boolean;
}

/**
 * `count` datagrams of `size` bytes (the last one `last`) from one peer port in ONE writeBatch. Datagrams not
 * delivered must be left out of `order`; `wrongContent` compares each one with the datagram its index names.
 */
async function udp(a: UdpArgs): Promise<Record<string, unknown>> {
  const { socket, port, messages } = await udpSocket(a.family);
  const peerPort = 50_000 + port;
  const sent = Array.from({ length: a.count }, (_, i) => datagram(port, i, i === a.count - 1 ? a.last : a.size));
  const packets = sent.map((d) => udpPacket(a.family, peerPort, port, d));
  const zeroed: number[] = [];
  /** The sum a zeroed datagram's checksum field should hold, per zeroed datagram (0 would make field 0 pass). */
  const zeroedTrueChecksum: number[] = [];
  const { peer, local } = ADDR[a.family];
  packets.forEach((p, i) => {
    if (a.zeroChecksum !== 'all' && a.zeroChecksum !== i) return;
    const l4 = l4Offset(p);
    p.writeUInt16BE(0, l4 + 6);
    if (a.zeroSumsToFfff === true) {
      p.writeUInt16BE(0, l4 + 12);
      const filler = transportChecksum(a.family, peer, local, 17, p.subarray(l4));
      p.writeUInt16BE(filler, l4 + 12);
      sent[i]!.writeUInt16BE(filler, 4);
    }
    zeroed.push(i);
    zeroedTrueChecksum.push(transportChecksum(a.family, peer, local, 17, p.subarray(l4)));
  });
  const expected = a.zeroChecksum === undefined || a.family === 4 ? a.count : a.count - zeroed.length;
  const measured = await writeMeasured(packets, {
    what: 'datagrams',
    done: () => messages.length >= expected,
    timeoutMs: 3_000,
    settleMs: 150, // a datagram that should have been dropped would show up now
  });
  socket.close();
  const indexOf = (m: { data: Buffer }): number => (m.data.length >= 4 ? m.data.readUInt32BE(0) : -1);
  return {
    ...written(measured),
    zeroed,
    zeroedTrueChecksum,
    received: messages.length,
    order: messages.map(indexOf),
    sizes: messages.map((m) => m.data.length),
    wrongContent: messages.map((m, i) => (sent[indexOf(m)]?.equals(m.data) === true ? -1 : i)).filter((i) => i >= 0),
    fromPorts: [...new Set(messages.map((m) => m.from))],
    peerPort,
    errors: errorsSince(measured),
  };
}

let nextEchoId = 0x4200;

interface IcmpArgs {
  readonly family: Family;
  readonly count: number;
}

function echoes(family: Family, count: number): { id: number; packets: Buffer[]; payloads: Buffer[] } {
  const id = nextEchoId++;
  const payloads = Array.from({ length: count }, (_, i) => pattern(id, i * 64, 56));
  return { id, packets: payloads.map((p, i) => echoRequest(family, id, i, p)), payloads };
}

function echoReplies(family: Family, id: number, payloads: Buffer[]): { replies: number; wrong: number[] } {
  const replyType = family === 4 ? 0 : 129;
  const replies = seen.filter((s) => s.family === family && s.icmpType === replyType && s.icmpId === id);
  const wrong = replies.filter((r) => !(payloads[r.icmpSeq] !== undefined && r.icmpPayload?.equals(payloads[r.icmpSeq]!) && r.checksumOk && r.toPeer));
  return { replies: new Set(replies.map((r) => r.icmpSeq)).size, wrong: wrong.map((r) => r.icmpSeq) };
}

/** `count` echo requests in ONE writeBatch: all answered, nothing coalesced. */
async function icmp(a: IcmpArgs): Promise<Record<string, unknown>> {
  const { id, packets, payloads } = echoes(a.family, a.count);
  const replied = (): ReturnType<typeof echoReplies> => echoReplies(a.family, id, payloads);
  const m = await writeMeasured(packets, { what: 'echo replies', done: () => replied().replies >= a.count, timeoutMs: 3_000 });
  return { ...written(m), ...replied() };
}

interface MixedArgs {
  readonly rounds: number;
  readonly size: number;
}

/** One batch: TCP segments of one flow, UDP datagrams of one flow, ICMP and ICMPv6 echo requests interleaved. */
async function mixed(a: MixedArgs): Promise<Record<string, unknown>> {
  const peer = await connect(4, { isn: 0x7fffff00, timestamps: true });
  const { socket, port, messages } = await udpSocket(6);
  const peerPort = 50_000 + port;
  const e4 = echoes(4, Math.ceil(a.rounds / 2));
  const e6 = echoes(6, Math.ceil(a.rounds / 2));
  const sent: Buffer[] = [];
  const packets: Buffer[] = [];
  const kinds: string[] = [];
  for (let i = 0; i < a.rounds; i++) {
    packets.push(peer.data(a.size, i === a.rounds - 1 ? TCP_ACK | TCP_PSH : TCP_ACK));
    kinds.push('tcp');
    const d = datagram(port, i, 1000);
    sent.push(d);
    packets.push(udpPacket(6, peerPort, port, d));
    kinds.push('udp');
    const echo = i % 2 === 0 ? e4.packets[i / 2] : e6.packets[(i - 1) / 2];
    if (echo !== undefined) {
      packets.push(echo);
      kinds.push(i % 2 === 0 ? 'icmp' : 'icmp6');
    }
  }
  const measured = await writeMeasured(packets, {
    what: 'everything of the mixed batch',
    done: () =>
      peer.receivedAndAcked() &&
      messages.length >= a.rounds &&
      echoReplies(4, e4.id, e4.payloads).replies >= e4.packets.length &&
      echoReplies(6, e6.id, e6.payloads).replies >= e6.packets.length,
    settleMs: 150,
  });
  socket.close();
  return finishTcp(
    measured,
    {
      kinds,
      ...written(measured),
      tcp: peer.deliveryAcked(),
      udp: {
        received: messages.length,
        order: messages.map((m) => m.data.readUInt32BE(0)),
        wrongContent: messages.map((m, i) => (sent[i] !== undefined && m.data.equals(sent[i]) ? -1 : i)).filter((i) => i >= 0),
      },
      icmp: { expected: e4.packets.length, ...echoReplies(4, e4.id, e4.payloads) },
      icmp6: { expected: e6.packets.length, ...echoReplies(6, e6.id, e6.payloads) },
    },
    peer,
  );
}

const commands: Record<string, (a: never) => Promise<Record<string, unknown>>> = {
  'tcp-stream': tcpStream,
  'tcp-gap': tcpGap,
  'tcp-irregular': tcpIrregular,
  'tcp-limits': tcpLimits,
  'tcp-corrupt': tcpCorrupt,
  'tcp-ae': tcpAe,
  udp,
  icmp,
  mixed,
};

// ---------------------------------------------------------------------------------------------------------

report({ event: 'ready', name: tun.name, gro: tun.groStats() });

let queue = Promise.resolve();
const input = createInterface({ input: process.stdin });
input.on('line', (line) => {
  const { id, cmd, args: commandArgs } = JSON.parse(line) as { id: number; cmd: string; args: unknown };
  queue = queue.then(async () => {
    try {
      const run = commands[cmd];
      if (run === undefined) throw new Error(`unknown command ${cmd}`);
      report({ event: 'result', id, result: await run(commandArgs as never) });
    } catch (err) {
      report({ event: 'failed', id, message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    }
  });
});
input.on('close', () => {
  void queue.then(async () => {
    for (const socket of sockets) socket.destroy();
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
    await tun.close();
    report({ event: 'closed' });
    process.exit(0);
  });
});
