/**
 * Fuzzing the control channel: parseControlLine on arbitrary text and JSON, and the control-stream line
 * splitting of ConnectionBase fed random bytes in random chunks (createMemoryPair().injectControlBytes).
 * Properties: nothing throws; only schema-valid messages come out, in order; every bad line is counted once in
 * stats.malformed; an endless line does not grow memory and the stream recovers at the next newline.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ControlMessageSchema,
  MAX_CONTROL_MESSAGE_BYTES,
  encodeControl,
  parseControlLine,
  type ControlMessage,
} from '../../src/transport/control.js';
import { createMemoryPair } from '../../src/transport/memory.js';
import { tick } from '../support/wait.js';


const addressArb = fc.option(
  fc.record({ address: fc.string({ maxLength: 40 }), prefix: fc.integer({ min: 0, max: 128 }), gateway: fc.string({ maxLength: 40 }) }),
);
const finite = fc.double({ noNaN: true, noDefaultInfinity: true });
const validMessage: fc.Arbitrary<ControlMessage> = fc.oneof(
  fc.record({
    type: fc.constant('assign' as const),
    sessionId: fc.string({ maxLength: 40 }),
    ipv4: addressArb,
    ipv6: addressArb,
    mtu: fc.integer({ min: 576, max: 65535 }),
    dns: fc.array(fc.string({ maxLength: 40 }), { maxLength: 4 }),
    routes: fc.array(fc.string({ maxLength: 40 }), { maxLength: 4 }),
    keepaliveMs: fc.integer({ min: 1, max: 2 ** 31 }),
  }),
  fc.record({ type: fc.constant('keepalive' as const), t: finite }),
  fc.record({ type: fc.constant('keepalive_ack' as const), t: finite }),
  fc.record(
    { type: fc.constant('close' as const), reason: fc.string({ maxLength: 64 }), message: fc.string({ maxLength: 512 }), retry: fc.boolean() },
    { requiredKeys: ['type', 'reason', 'retry'] },
  ),
);

/** One JSON value somewhere in a valid message replaced by an arbitrary one. */
const corruptedMessage = fc
  .tuple(validMessage, fc.nat(), fc.jsonValue({ maxDepth: 3 }))
  .map(([message, pick, value]) => {
    const obj = { ...message } as Record<string, unknown>;
    const keys = [...Object.keys(obj), '__proto__', 'constructor', 'extra'];
    obj[keys[pick % keys.length]!] = value;
    return JSON.stringify(obj);
  });

function expectParsedContract(line: string): void {
  const parsed = parseControlLine(line);
  if (parsed.ok) {
    // Whatever comes out is a schema-valid message (re-validates, survives a round trip).
    expect(ControlMessageSchema.safeParse(parsed.message).success).toBe(true);
    const again = parseControlLine(encodeControl(parsed.message).trimEnd());
    expect(again).toEqual({ ok: true, message: parsed.message });
  } else {
    expect(typeof parsed.error).toBe('string');
    expect(parsed.error.length).toBeGreaterThan(0);
  }
}

describe('parseControlLine under fuzz', () => {
  it('never throws on arbitrary text (binary, unicode, JSON-ish)', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: 'binary', maxLength: 300 }),
          fc.string({ unit: 'grapheme', maxLength: 300 }),
          fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v) ?? 'null'),
          corruptedMessage,
        ),
        expectParsedContract,
      ),
      { numRuns: 4000 },
    );
  });

  it('round-trips every valid message', () => {
    fc.assert(
      fc.property(validMessage, (message) => {
        const parsed = parseControlLine(encodeControl(message).trimEnd());
        expect(parsed.ok).toBe(true);
        if (parsed.ok) expect(parsed.message).toEqual(ControlMessageSchema.parse(JSON.parse(JSON.stringify(message))));
      }),
      { numRuns: 1000 },
    );
  });

  it('rejects deep nesting, huge numbers, prototype keys and over-long lines without throwing', () => {
    const deep = `${'['.repeat(20_000)}${']'.repeat(20_000)}`;
    expect(parseControlLine(deep).ok).toBe(false);
    expect(parseControlLine('{"type":"keepalive","t":1e999}').ok).toBe(false); // Infinity is not a number here
    expect(parseControlLine('{"type":"keepalive","t":1,"__proto__":{"type":"close"}}')).toEqual({ ok: true, message: { type: 'keepalive', t: 1 } });
    expect(parseControlLine(JSON.stringify({ type: 'close', reason: 'x'.repeat(65), retry: true })).ok).toBe(false);
    const long = JSON.stringify({ type: 'keepalive', t: 1, pad: 'x'.repeat(MAX_CONTROL_MESSAGE_BYTES) });
    expect(parseControlLine(long)).toEqual({ ok: false, error: 'control message too long' });
  });
});

/** A control-stream line: a valid message, or garbage that can never parse (starts with '#'). */
const streamLine = fc.oneof(
  {
    weight: 2,
    arbitrary: validMessage.map((m) => {
      const text = encodeControl(m).slice(0, -1);
      // As it reads back from JSON (-0 becomes 0).
      return { valid: ControlMessageSchema.parse(JSON.parse(text)) as ControlMessage | null, text };
    }),
  },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }).map((s) => ({ valid: null, text: `#${s.replace(/\n/g, ' ')}` })) },
  // A corrupted message may still be valid (e.g. an extra key is stripped): the parser, fuzzed above, decides.
  {
    weight: 1,
    arbitrary: corruptedMessage.map((text) => {
      const parsed = parseControlLine(text);
      return { valid: parsed.ok ? parsed.message : null, text };
    }),
  },
  { weight: 1, arbitrary: fc.constant({ valid: null, text: '' }) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 * MAX_CONTROL_MESSAGE_BYTES }).map((n) => ({ valid: null, text: `#${'y'.repeat(n)}` })) },
);

/** Split bytes at random points (including inside multi-byte UTF-8 sequences). */
function chunk(bytes: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => (bytes.length === 0 ? 0 : c % bytes.length)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let from = 0;
  for (const p of points) {
    if (p > from) out.push(bytes.subarray(from, p));
    from = Math.max(from, p);
  }
  out.push(bytes.subarray(from));
  return out;
}

describe('control-stream line splitting under fuzz', () => {
  it('delivers exactly the valid messages in order and counts each bad line once, whatever the chunking', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(streamLine, { maxLength: 25 }), fc.array(fc.nat(), { maxLength: 30 }), async (lines, cuts) => {
        const received: ControlMessage[] = [];
        const text = lines.map((l) => `${l.text}\n`).join('');
        const memory = createMemoryPair();
        memory.server.setControlHandler((m) => received.push(m));
        for (const piece of chunk(new TextEncoder().encode(text), cuts)) memory.injectControlBytes('server', piece);
        await tick();
        await tick();
        const expected = lines.filter((l) => l.valid !== null).map((l) => l.valid);
        expect(received).toEqual(expected);
        const bad = lines.filter((l) => l.valid === null && l.text !== '').length;
        expect(memory.server.stats.malformed).toBe(bad);
      }),
      { numRuns: 300 },
    );
  });

  it('never throws on random bytes in random chunks, and still works afterwards', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 2000 }), { maxLength: 20 }), async (chunks) => {
        const memory = createMemoryPair();
        const received: ControlMessage[] = [];
        memory.server.setControlHandler((m) => received.push(m));
        for (const c of chunks) memory.injectControlBytes('server', c);
        // Whatever came before, a newline ends it and the next well-formed line is understood.
        memory.injectControlBytes('server', new TextEncoder().encode('\n{"type":"keepalive","t":42}\n'));
        await tick();
        await tick();
        expect(received.at(-1)).toEqual({ type: 'keepalive', t: 42 });
        expect(received.length).toBeLessThanOrEqual(33);
      }),
      { numRuns: 300 },
    );
  });

  it('drops an endless line without growing memory, counts it once, and recovers at the next newline', async () => {
    const memory = createMemoryPair();
    const received: ControlMessage[] = [];
    memory.server.setControlHandler((m) => received.push(m));
    const block = new TextEncoder().encode('z'.repeat(64 * 1024));
    const heapBefore = process.memoryUsage().heapUsed;
    for (let i = 0; i < 256; i++) memory.injectControlBytes('server', block); // 16 MiB without a newline
    await tick();
    await tick();
    expect(memory.server.stats.malformed).toBe(1);
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(64 * 1024 * 1024);
    memory.injectControlBytes('server', new TextEncoder().encode('tail\n{"type":"keepalive_ack","t":7}\n'));
    await tick();
    await tick();
    expect(received).toEqual([{ type: 'keepalive_ack', t: 7 }]);
    expect(memory.server.stats.malformed).toBe(1);
  });

  it('holds at most 32 messages before a handler is set (a flood before assignment does not grow memory)', async () => {
    const memory = createMemoryPair();
    const flood = encodeControl({ type: 'keepalive', t: 1 }).repeat(10_000);
    memory.injectControlBytes('server', new TextEncoder().encode(flood));
    await tick();
    await tick();
    const received: ControlMessage[] = [];
    memory.server.setControlHandler((m) => received.push(m));
    expect(received.length).toBe(32);
  });
});
