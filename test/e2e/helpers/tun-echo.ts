/**
 * e2e helper, run inside a network namespace (`ip netns exec NS node --import tsx tun-echo.ts '<json>'`):
 * opens a LinuxTun, answers every ICMP/ICMPv6 echo request read from it (IPv4 replies with write(), IPv6
 * replies with writeBatch()) and reports JSON lines on stdout:
 *   {"event":"ready","name"}                       device open and configured
 *   {"event":"batch","count","echoed","other"}     per read batch; `other` describes non-echo packets
 *   {"event":"uncaught","code","message"}          an exception escaped the batch handler
 *   {"event":"closed","stats"}                     after stdin ends; the process must then exit by itself
 * A batch holding an echo request to `throwFor` makes the handler throw once (after answering nothing).
 */
import { createInterface } from 'node:readline';
import { isQuicgateError } from '../../../src/errors.js';
import { createTunBatch } from '../../../src/tun/device.js';
import type { TunBatch, TunSettings } from '../../../src/tun/device.js';
import { LinuxTun } from '../../../src/tun/linux.js';

interface HelperArgs extends TunSettings {
  readonly throwFor?: string;
}

const args = JSON.parse(process.argv[2] ?? '{}') as HelperArgs;
const report = (event: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(event)}\n`);

process.on('uncaughtException', (err) => {
  report({ event: 'uncaught', code: isQuicgateError(err) ? err.code : undefined, message: String(err) });
});

function onesComplementSum(data: Buffer, start: number, end: number, initial = 0): number {
  let sum = initial;
  for (let i = start; i + 1 < end; i += 2) sum += data.readUInt16BE(i);
  if ((end - start) % 2 === 1) sum += data[end - 1]! << 8;
  return sum;
}

function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** Turns an IPv4 ICMP echo request at [start, start+length) into the reply in place; false if it is not one. */
function answerIPv4(data: Buffer, start: number, length: number): boolean {
  const headerLength = (data[start]! & 0x0f) * 4;
  const icmp = start + headerLength;
  if (data[start + 9] !== 1 || length < headerLength + 8 || data[icmp] !== 8) return false;
  const source = Buffer.from(data.subarray(start + 12, start + 16));
  data.copy(data, start + 12, start + 16, start + 20);
  source.copy(data, start + 16);
  data[start + 8] = 64;
  data.writeUInt16BE(0, start + 10);
  data.writeUInt16BE(fold(onesComplementSum(data, start, icmp)), start + 10);
  data[icmp] = 0;
  data.writeUInt16BE(0, icmp + 2);
  data.writeUInt16BE(fold(onesComplementSum(data, icmp, start + length)), icmp + 2);
  return true;
}

/** Same for IPv6 ICMPv6 echo (no extension headers); the checksum covers the pseudo-header. */
function answerIPv6(data: Buffer, start: number, length: number): boolean {
  const icmp = start + 40;
  if (data[start + 6] !== 58 || length < 48 || data[icmp] !== 128) return false;
  const source = Buffer.from(data.subarray(start + 8, start + 24));
  data.copy(data, start + 8, start + 24, start + 40);
  source.copy(data, start + 24);
  data[start + 7] = 64;
  data[icmp] = 129;
  data.writeUInt16BE(0, icmp + 2);
  const upperLength = length - 40;
  let sum = onesComplementSum(data, start + 8, start + 40); // source + destination
  sum += (upperLength >>> 16) + (upperLength & 0xffff) + 58;
  data.writeUInt16BE(fold(onesComplementSum(data, icmp, start + length, sum)), icmp + 2);
  return true;
}

function describe(data: Buffer, start: number, length: number): string {
  const version = data[start]! >> 4;
  if (version === 6) return `ipv6 nh=${data[start + 6]} type=${data[start + 40]} len=${length}`;
  if (version === 4) return `ipv4 proto=${data[start + 9]} len=${length}`;
  return `version=${version} len=${length}`;
}

function ipv4Destination(data: Buffer, start: number): string {
  return Array.from(data.subarray(start + 16, start + 20)).join('.');
}

const tun = await LinuxTun.open(args);
const replies6 = createTunBatch(tun.mtu, 64);
let thrown = false;

tun.onBatch((batch: TunBatch) => {
  let echoed = 0;
  const other: string[] = [];
  replies6.count = 0;
  for (let i = 0; i < batch.count; i++) {
    const start = i * batch.stride;
    const length = batch.lengths[i]!;
    const version = batch.data[start]! >> 4;
    if (args.throwFor !== undefined && !thrown && version === 4 && ipv4Destination(batch.data, start) === args.throwFor) {
      thrown = true;
      throw new Error(`handler fails on purpose for ${args.throwFor}`);
    }
    if (version === 4 && answerIPv4(batch.data, start, length)) {
      if (tun.write(batch.data, start, length)) echoed++;
    } else if (version === 6 && answerIPv6(batch.data, start, length)) {
      batch.data.copy(replies6.data, replies6.count * replies6.stride, start, start + length);
      replies6.lengths[replies6.count++] = length;
    } else {
      other.push(describe(batch.data, start, length));
    }
  }
  if (replies6.count > 0) echoed += tun.writeBatch(replies6);
  report({ event: 'batch', count: batch.count, echoed, other });
});

report({ event: 'ready', name: tun.name });

// stdin ending (the test closes it, or dies) closes the device; nothing else may keep the process alive.
const input = createInterface({ input: process.stdin });
input.on('close', () => {
  void tun.close().then(() => report({ event: 'closed', stats: tun.stats }));
});
