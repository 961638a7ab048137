import { beforeAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/clock.js';
import type { UserConfig } from '../../src/config/types.js';
import type { RejectReason } from '../../src/gateway/session.js';
import { SessionManager, type AdmissionCheck } from '../../src/gateway/sessions.js';
import { silentLogger } from '../../src/log.js';
import type { ConnectRequest } from '../../src/transport/types.js';
import { serverConfig, testPasswordHash, userConfig } from '../support/config-fixture.js';

let hash = '';
beforeAll(async () => {
  hash = await testPasswordHash('pw');
});

const request = (user: string, password = 'pw'): ConnectRequest => ({
  user,
  password,
  sourceAddress: '192.0.2.10',
  peer: '192.0.2.10:40000',
  previousAddresses: [],
  clientVersion: 'test',
  resume: null,
  transport: 'memory',
});

function manager(admissionCheck?: AdmissionCheck): { manager: SessionManager; rejected: RejectReason[] } {
  const users: UserConfig[] = [userConfig('alice', { passwordHash: hash }), userConfig('mallory', { passwordHash: hash, disabled: true })];
  const m = new SessionManager({ config: serverConfig({ users }), logger: silentLogger(), clock: new FakeClock(), ...(admissionCheck ? { admissionCheck } : {}) });
  const rejected: RejectReason[] = [];
  m.onRejected((_u, _s, reason) => void rejected.push(reason));
  return { manager: m, rejected };
}

describe('SessionManager admission check (quota hook)', () => {
  it('refuses with 403 quota_exceeded when the check says so, counted and reported', async () => {
    const seen: string[] = [];
    const { manager: m, rejected } = manager((u) => {
      seen.push(u.name);
      return 'quota_exceeded';
    });
    expect(await m.authenticate(request('alice'))).toEqual({ ok: false, status: 403, code: 'quota_exceeded', message: "this user's data quota is spent" });
    expect(m.stats().rejections.quota_exceeded).toBe(1);
    expect(rejected).toEqual(['quota_exceeded']);
    expect(seen).toEqual(['alice']);
    m.closeAll();
  });

  it('runs only after the password and disabled checks', async () => {
    const seen: string[] = [];
    const { manager: m, rejected } = manager((u) => {
      seen.push(u.name);
      return 'quota_exceeded';
    });
    expect(await m.authenticate(request('alice', 'wrong'))).toMatchObject({ ok: false, code: 'auth_failed' });
    expect(await m.authenticate(request('nobody'))).toMatchObject({ ok: false, code: 'auth_failed' });
    expect(await m.authenticate(request('mallory'))).toMatchObject({ ok: false, code: 'user_disabled' });
    expect(seen).toEqual([]);
    expect(rejected).toEqual(['auth_failed', 'auth_failed', 'user_disabled']);
    m.closeAll();
  });

  it('admits when the check returns null; setAdmissionCheck installs and removes a check', async () => {
    const { manager: m } = manager(() => null);
    expect(await m.authenticate(request('alice'))).toEqual({ ok: true, user: 'alice' });
    m.setAdmissionCheck(() => 'quota_exceeded');
    expect(await m.authenticate(request('alice'))).toMatchObject({ ok: false, status: 403, code: 'quota_exceeded' });
    m.setAdmissionCheck(null);
    expect(await m.authenticate(request('alice'))).toEqual({ ok: true, user: 'alice' });
    m.closeAll();
  });
});
