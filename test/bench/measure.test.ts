import { describe, expect, it } from 'vitest';
import { ackShare, tcpIpPerPayload } from '../../bench/lib/measure.js';

describe('IP bytes per payload byte of a bulk TCP flow', () => {
  it('is the MTU over the MTU less 52 header bytes (IPv4, TCP, timestamps)', () => {
    expect(tcpIpPerPayload(1400)).toBeCloseTo(1400 / 1348, 12);
    // A smaller tunnel MTU (the library's HTTP/3) carries more headers per payload byte.
    expect(tcpIpPerPayload(1207)).toBeCloseTo(1207 / 1155, 12);
    expect(tcpIpPerPayload(1207)).toBeGreaterThan(tcpIpPerPayload(1400));
  });

  it('counts one 52-byte ACK per two full segments for the reverse direction', () => {
    expect(ackShare(1400)).toBeCloseTo(52 / 2800, 12);
    expect(ackShare(1207)).toBeCloseTo(52 / 2414, 12);
  });
});
