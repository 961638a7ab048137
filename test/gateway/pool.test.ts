import { describe, expect, it } from 'vitest';
import { AddressPool, MAX_IPV6_HOSTS, type Allocation, type StaticUser } from '../../src/gateway/pool.js';
import type { TunnelNetworks } from '../../src/config/types.js';
import { codeOf } from '../support/errors.js';

const v4Only = (cidr: string, gateway: string): TunnelNetworks => ({ ipv4: { cidr, gateway }, ipv6: null });
const v6Only = (cidr: string, gateway: string): TunnelNetworks => ({ ipv4: null, ipv6: { cidr, gateway } });
const dual: TunnelNetworks = {
  ipv4: { cidr: '198.18.0.0/29', gateway: '198.18.0.1' },
  ipv6: { cidr: '2001:db8:1::/64', gateway: '2001:db8:1::1' },
};


function newPool(networks: TunnelNetworks, users: readonly StaticUser[] = [], options: { rememberUsers?: number } = {}): AddressPool {
  return new AddressPool({ networks, users }, options);
}

describe('AddressPool', () => {
  it('hands out every host address of a /29 except network, broadcast and gateway, then is exhausted', () => {
    const pool = newPool(v4Only('198.18.0.0/29', '198.18.0.1'));
    const got = new Set<string>();
    for (let i = 0; i < 5; i++) got.add(pool.allocate(`u${i}`).ipv4!);
    expect([...got].sort()).toEqual(['198.18.0.2', '198.18.0.3', '198.18.0.4', '198.18.0.5', '198.18.0.6']);
    expect(codeOf(() => pool.allocate('late'))).toBe('QG_ERR_POOL_EXHAUSTED');
    expect(pool.stats().ipv4).toEqual({ size: 5, inUse: 5, reserved: 0, free: 0 });
    expect(pool.freeCount()).toBe(0);
  });

  it('skips a gateway in the middle of the range', () => {
    const pool = newPool(v4Only('198.18.0.0/30', '198.18.0.2'));
    expect(pool.allocate('a').ipv4).toBe('198.18.0.1');
    expect(codeOf(() => pool.allocate('b'))).toBe('QG_ERR_POOL_EXHAUSTED');
  });

  it('gives one address per family and reports stats per family', () => {
    const pool = newPool(dual);
    const a = pool.allocate('alice');
    expect(a).toEqual({ ipv4: '198.18.0.2', ipv6: '2001:db8:1::2' });
    expect(pool.isAllocated('198.18.0.2')).toBe(true);
    expect(pool.isAllocated('2001:DB8:1:0::2')).toBe(true);
    expect(pool.isAllocated('198.18.0.3')).toBe(false);
    const stats = pool.stats();
    expect(stats.ipv4).toEqual({ size: 5, inUse: 1, reserved: 0, free: 4 });
    expect(stats.ipv6).toEqual({ size: MAX_IPV6_HOSTS - 2, inUse: 1, reserved: 0, free: MAX_IPV6_HOSTS - 3 });
    expect(pool.freeCount()).toBe(4); // bounded by the smaller family
    pool.release(a);
    expect(pool.isAllocated('198.18.0.2')).toBe(false);
    expect(pool.stats().ipv4?.inUse).toBe(0);
    expect(pool.stats().ipv6?.inUse).toBe(0);
  });

  it('takes nothing when one family is exhausted', () => {
    const pool = newPool({
      ipv4: { cidr: '198.18.0.0/24', gateway: '198.18.0.1' },
      ipv6: { cidr: '2001:db8::/126', gateway: '2001:db8::1' },
    });
    pool.allocate('a');
    pool.allocate('b');
    expect(codeOf(() => pool.allocate('c'))).toBe('QG_ERR_POOL_EXHAUSTED');
    expect(pool.stats().ipv4?.inUse).toBe(2);
  });

  it('reserves static addresses for their user alone, and gives them to that user first', () => {
    const pool = newPool(v4Only('198.18.0.0/29', '198.18.0.1'), [{ name: 'bob', staticAddresses: ['198.18.0.2'] }]);
    const others = [pool.allocate('a'), pool.allocate('b'), pool.allocate('c'), pool.allocate('d')].map((x) => x.ipv4);
    expect(others).not.toContain('198.18.0.2');
    expect(codeOf(() => pool.allocate('e', ['198.18.0.2']))).toBe('QG_ERR_POOL_EXHAUSTED');
    expect(pool.allocate('bob').ipv4).toBe('198.18.0.2');
    expect(pool.stats().ipv4).toEqual({ size: 5, inUse: 5, reserved: 1, free: 0 });
  });

  it('returns a reconnecting user the address they last had, even after others came and went', () => {
    const pool = newPool(dual);
    const first = pool.allocate('alice');
    pool.allocate('x');
    pool.release(first);
    const y = pool.allocate('y');
    expect(y.ipv4).not.toBe(first.ipv4);
    expect(pool.allocate('alice')).toEqual(first);
  });

  it('honours a client hint when free and not someone else\'s, and ignores it otherwise', () => {
    const pool = newPool(dual);
    expect(pool.allocate('alice', ['198.18.0.5', '2001:db8:1::abcd'])).toEqual({ ipv4: '198.18.0.5', ipv6: '2001:db8:1::abcd' });
    const bob = pool.allocate('bob', ['198.18.0.5']); // in use by alice
    expect(bob.ipv4).toBe('198.18.0.2');
    pool.release(bob);
    // bob released .2 last: carol may not claim it by hint, bob may.
    expect(pool.allocate('carol', ['198.18.0.2']).ipv4).not.toBe('198.18.0.2');
    expect(pool.allocate('bob', ['198.18.0.2']).ipv4).toBe('198.18.0.2');
    // Hints outside the network, the gateway, or garbage are ignored.
    expect(pool.allocate('dave', ['198.19.0.1', '198.18.0.1', 'nonsense']).ipv4).not.toBe('198.18.0.1');
  });

  it('reuses released addresses oldest first once the never-used ones are gone', () => {
    const pool = newPool(v4Only('198.18.0.0/29', '198.18.0.1'), [], { rememberUsers: 0 });
    const all: Allocation[] = [];
    for (let i = 0; i < 5; i++) all.push(pool.allocate(`u${i}`));
    pool.release(all[3]!);
    pool.release(all[1]!);
    expect(pool.allocate('n1').ipv4).toBe(all[3]!.ipv4);
    expect(pool.allocate('n2').ipv4).toBe(all[1]!.ipv4);
  });

  it('bounds its last-address memory (LRU)', () => {
    const pool = newPool(v4Only('198.18.0.0/24', '198.18.0.1'), [], { rememberUsers: 2 });
    const a = pool.allocate('a');
    const b = pool.allocate('b');
    const c = pool.allocate('c');
    pool.release(a);
    pool.release(b);
    pool.release(c); // forgets a
    pool.allocate('filler'); // next never-used address
    expect(pool.allocate('b')).toEqual(b);
    expect(pool.allocate('c')).toEqual(c);
    expect(pool.allocate('a')).not.toEqual(a);
  });

  it('releasing twice or releasing unknown addresses is harmless', () => {
    const pool = newPool(v4Only('198.18.0.0/29', '198.18.0.1'));
    const a = pool.allocate('a');
    pool.release(a);
    pool.release(a);
    pool.release({ ipv4: '203.0.113.9', ipv6: null });
    pool.release({ ipv4: null, ipv6: '2001:db8::1' });
    expect(pool.stats().ipv4?.inUse).toBe(0);
    const got = new Set<string>();
    for (let i = 0; i < 5; i++) got.add(pool.allocate(`u${i}`).ipv4!);
    expect(got.size).toBe(5);
  });

  it('fills and drains a /16 and an IPv6 /64: 65 533 distinct pairs, exhausted, then reused', () => {
    const pool = newPool({
      ipv4: { cidr: '198.18.0.0/16', gateway: '198.18.0.1' },
      ipv6: { cidr: '2001:db8:2::/64', gateway: '2001:db8:2::1' },
    });
    const held: Allocation[] = [];
    for (let i = 0; i < 65_533; i++) held.push(pool.allocate(`u${i % 500}`));
    expect(codeOf(() => pool.allocate('one-too-many'))).toBe('QG_ERR_POOL_EXHAUSTED');
    expect(new Set(held.map((a) => a.ipv4)).size).toBe(65_533);
    expect(new Set(held.map((a) => a.ipv6)).size).toBe(65_533);
    for (const a of held) pool.release(a);
    const again = new Set<string>();
    for (let i = 0; i < 1000; i++) again.add(pool.allocate(`v${i}`).ipv4!);
    expect(again.size).toBe(1000);
  });

  it('costs the same per allocate/release in a nearly full /16 as in a nearly full /24 (no scan per call)', () => {
    // Compared side by side, not against a wall-clock bound a busy machine breaks: a scan per call would make
    // the /16's pairs about 256 times dearer than the /24's; the least of three interleaved runs of each.
    const pairCost = (cidr: string, gateway: string): number => {
      const pool = newPool({ ipv4: { cidr, gateway }, ipv6: null });
      const held: Allocation[] = [];
      for (;;) {
        try {
          held.push(pool.allocate(`u${held.length % 500}`));
        } catch {
          break;
        }
      }
      for (const a of held.splice(0, 8)) pool.release(a); // eight free addresses among the taken ones
      const rounds = 4000;
      const start = performance.now();
      for (let i = 0; i < rounds; i++) pool.release(pool.allocate(`w${i % 50}`));
      return (performance.now() - start) / rounds;
    };
    const small: number[] = [];
    const large: number[] = [];
    for (let run = 0; run < 3; run++) {
      small.push(pairCost('198.18.0.0/24', '198.18.0.1'));
      large.push(pairCost('198.18.0.0/16', '198.18.0.1'));
    }
    const ratio = Math.min(...large) / Math.min(...small);
    expect(ratio, `per pair: /16 ${Math.min(...large).toFixed(4)} ms, /24 ${Math.min(...small).toFixed(4)} ms`).toBeLessThan(16);
  });

  it('caps IPv6 at MAX_IPV6_HOSTS offsets', () => {
    const pool = newPool(v6Only('2001:db8::/64', '2001:db8::1'));
    expect(pool.stats().ipv6?.size).toBe(MAX_IPV6_HOSTS - 2);
  });

  it('updateStatic validates everything before changing anything', () => {
    const pool = newPool(dual, [{ name: 'bob', staticAddresses: ['198.18.0.2'] }]);
    expect(codeOf(() => pool.updateStatic([{ name: 'x', staticAddresses: ['198.19.1.1'] }]))).toBe('QG_ERR_ADDRESS_UNAVAILABLE');
    expect(codeOf(() => pool.updateStatic([{ name: 'x', staticAddresses: ['198.18.0.1'] }]))).toBe('QG_ERR_ADDRESS_UNAVAILABLE');
    expect(
      codeOf(() =>
        pool.updateStatic([
          { name: 'x', staticAddresses: ['198.18.0.3'] },
          { name: 'y', staticAddresses: ['198.18.0.3'] },
        ]),
      ),
    ).toBe('QG_ERR_ADDRESS_UNAVAILABLE');
    expect(codeOf(() => newPool(v4Only('198.18.0.0/24', '198.18.0.1'), [{ name: 'z', staticAddresses: ['2001:db8::5'] }]))).toBe(
      'QG_ERR_ADDRESS_UNAVAILABLE',
    );
    // bob's reservation is still in force after the refused reloads.
    expect(pool.allocate('other').ipv4).toBe('198.18.0.3');
    expect(pool.stats().ipv4?.reserved).toBe(1);
  });

  it('updateStatic frees a dropped reservation for everyone and reserves a new one', () => {
    const pool = newPool(v4Only('198.18.0.0/29', '198.18.0.1'), [{ name: 'bob', staticAddresses: ['198.18.0.2'] }]);
    const held = [pool.allocate('a'), pool.allocate('b'), pool.allocate('c'), pool.allocate('d')];
    expect(codeOf(() => pool.allocate('e'))).toBe('QG_ERR_POOL_EXHAUSTED');
    pool.updateStatic([{ name: 'carol', staticAddresses: [held[0]!.ipv4!] }]);
    expect(pool.allocate('e').ipv4).toBe('198.18.0.2'); // bob's old static is generic now
    pool.release(held[0]!); // carol's new static, held by a, goes back to carol only
    expect(codeOf(() => pool.allocate('f'))).toBe('QG_ERR_POOL_EXHAUSTED');
    expect(pool.allocate('carol').ipv4).toBe(held[0]!.ipv4);
  });

  it('rejects bad networks with QG_ERR_CONFIG_INVALID', () => {
    expect(codeOf(() => newPool(v4Only('198.18.0.0/31', '198.18.0.1')))).toBe('QG_ERR_CONFIG_INVALID');
    expect(codeOf(() => newPool(v4Only('198.18.0.0/24', '198.19.0.1')))).toBe('QG_ERR_CONFIG_INVALID');
    expect(codeOf(() => newPool(v4Only('198.18.0.0/24', '198.18.0.255')))).toBe('QG_ERR_CONFIG_INVALID');
    expect(codeOf(() => newPool(v4Only('not-a-cidr', '198.18.0.1')))).toBe('QG_ERR_CONFIG_INVALID');
    expect(codeOf(() => newPool({ ipv4: null, ipv6: null }))).toBe('QG_ERR_CONFIG_INVALID');
  });

  it('reports the prefix and gateway of each family', () => {
    const pool = newPool(dual);
    expect(pool.network('ipv4')).toEqual({ prefix: 29, gateway: '198.18.0.1' });
    expect(pool.network('ipv6')).toEqual({ prefix: 64, gateway: '2001:db8:1::1' });
  });
});

describe('AddressPool in a fleet: cursorStart and assign', () => {
  it('starts the never-used cursor part-way, wraps round to the start, and still hands out every address once', () => {
    const pool = new AddressPool({ networks: v4Only('198.18.0.0/28', '198.18.0.1'), users: [] }, { cursorStart: 0.5 });
    const order: string[] = [];
    for (let i = 0; i < 13; i++) order.push(pool.allocate(`u${i}`).ipv4!);
    expect(order[0]).toBe('198.18.0.8');
    expect(order).toContain('198.18.0.2');
    expect(new Set(order).size).toBe(13);
    expect(codeOf(() => pool.allocate('late'))).toBe('QG_ERR_POOL_EXHAUSTED');
    // A released address passed by the wrapped cursor comes back through the FIFO.
    pool.release({ ipv4: order[0]!, ipv6: null });
    expect(pool.allocate('again').ipv4).toBe(order[0]);
  });

  it('assigns exactly the given addresses, or nothing when one is held or another user\'s static address', () => {
    const pool = newPool(dual, [{ name: 'stan', staticAddresses: ['198.18.0.6'] }]);
    pool.assign('alice', { ipv4: '198.18.0.3', ipv6: '2001:db8:1::3' });
    expect(pool.isAllocated('198.18.0.3')).toBe(true);
    expect(codeOf(() => pool.assign('bob', { ipv4: '198.18.0.4', ipv6: '2001:db8:1::3' }))).toBe('QG_ERR_ADDRESS_UNAVAILABLE');
    expect(pool.isAllocated('198.18.0.4')).toBe(false);
    expect(codeOf(() => pool.assign('bob', { ipv4: '198.18.0.6', ipv6: '2001:db8:1::9' }))).toBe('QG_ERR_ADDRESS_UNAVAILABLE');
    pool.assign('stan', { ipv4: '198.18.0.6', ipv6: '2001:db8:1::9' });
    expect(pool.isAllocated('2001:db8:1::9')).toBe(true);
  });

  it('with scatter draws a free address at random, skipping held, static and the gateway, and falls back to the cursor', () => {
    const pool = newPool(v4Only('198.18.0.0/29', '198.18.0.1'), [{ name: 'stan', staticAddresses: ['198.18.0.5'] }]);
    // Offsets 1..6; draws map to 1 + floor(x * 6).
    const draws = (xs: number[]): (() => number) => () => xs.shift() ?? 0;
    expect(pool.allocate('a', [], draws([3 / 6])).ipv4).toBe('198.18.0.4');
    // 0.1 → offset 1 (the gateway), 0.6 → 4 (held), 0.7 → 5 (stan's), 0.9 → 6: free.
    expect(pool.allocate('b', [], draws([0.1, 0.6, 0.7, 0.9])).ipv4).toBe('198.18.0.6');
    // Every draw lands on something taken: the cursor's next never-used address.
    expect(pool.allocate('c', [], () => 0.6).ipv4).toBe('198.18.0.2');
    // Preferences still come first: stan's static address.
    expect(pool.allocate('stan', [], () => 0.99).ipv4).toBe('198.18.0.5');
  });
});
