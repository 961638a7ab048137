import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { loadClientConfig } from '../../src/config/client.js';
import { loadServerConfig, loadUsersFile } from '../../src/config/load.js';
import { verifyPassword } from '../../src/config/password.js';
import { ClientFileSchema, ServerFileSchema, knownKeysAt } from '../../src/config/schema.js';

const root = (p: string): string => fileURLToPath(new URL(`../../${p}`, import.meta.url));

describe('example files', () => {
  it('config/server.example.yaml loads, with its users file, and matches the defaults where it says so', async () => {
    const c = await loadServerConfig(root('config/server.example.yaml'));
    const d = await loadServerConfig();
    expect(c.usersFile).toBe(root('config/users.example.yaml'));
    expect(c.routes).toEqual(['0.0.0.0/0', '::/0']); // the one value it sets differently on purpose
    expect({ ...c, source: '', usersFile: null, routes: [] }).toEqual({ ...d, source: '', routes: [] });
  });

  it('config/users.example.yaml has the documented example users', async () => {
    const users = await loadUsersFile(root('config/users.example.yaml'));
    const byName = new Map(users.map((u) => [u.name, u]));
    expect(byName.get('alice')?.bandwidth).toBe(20e6 / 8);
    expect(byName.get('bob')?.bandwidth).toBeNull();
    expect(byName.get('carol')).toMatchObject({ bandwidth: 1_500_000, maxSessions: 1, staticAddresses: ['198.18.0.10', '2001:db8:4711::10'] });
    expect(byName.get('dave')?.disabled).toBe(true);
  });

  it('the example passwords written in comments match the hashes', async () => {
    const text = readFileSync(root('config/users.example.yaml'), 'utf8');
    const stated = [...text.matchAll(/# (\w+) \/ password "([^"]+)" \(example only\)/g)].map((m) => [m[1]!, m[2]!] as const);
    const users = await loadUsersFile(root('config/users.example.yaml'));
    expect(stated.map(([name]) => name)).toEqual(users.map((u) => u.name));
    for (const [name, password] of stated) {
      const hash = users.find((u) => u.name === name)!.passwordHash;
      expect(hash).toMatch(/^\$scrypt\$ln=14,/);
      expect(await verifyPassword(password, hash)).toBe(true);
      expect(await verifyPassword(`${password}x`, hash)).toBe(false);
    }
  });

  it('config/client.example.yaml loads', async () => {
    const c = await loadClientConfig(root('config/client.example.yaml'));
    expect(c).toMatchObject({ server: 'https://127.0.0.1:4433/', user: 'alice', password: 'alice-example', transport: 'auto' });
  });
});

/** Every key path of a schema, e.g. "limits.idle_timeout", "users[].quota.bytes". */
function keyPaths(schema: z.ZodType, prefix: (string | number)[] = [], shown = ''): string[] {
  const out: string[] = [];
  for (const key of knownKeysAt(schema, prefix)) {
    const here = shown === '' ? key : `${shown}.${key}`;
    out.push(here);
    out.push(...keyPaths(schema, [...prefix, key], here));
    out.push(...keyPaths(schema, [...prefix, key, 0], `${here}[]`));
  }
  return out;
}

describe('docs/config.md', () => {
  const doc = readFileSync(root('docs/config.md'), 'utf8');
  it.each([
    ['server', ServerFileSchema],
    ['client', ClientFileSchema],
  ] as const)('documents every %s key', async (_, schema) => {
    const missing = keyPaths(schema).filter((p) => !doc.includes(`\`${p}\``));
    expect(missing).toEqual([]);
  });
});

describe('docs/fleet.md', () => {
  it('the three-gateway config loads for gw1, gw2 and gw3 (the same file but gateway_id and listen address)', async () => {
    const doc = readFileSync(root('docs/fleet.md'), 'utf8');
    const section = doc.slice(doc.indexOf('## Running three gateways'), doc.indexOf("## A user's rate, shared"));
    const yaml = /```yaml\n([\s\S]*?)```/.exec(section)?.[1];
    expect(yaml).toBeDefined();
    const dir = mkdtempSync(join(tmpdir(), 'qg-fleet-doc-'));
    try {
      for (const n of [1, 2, 3]) {
        const file = join(dir, `gw${n}.yaml`);
        writeFileSync(
          file,
          yaml!
            .replace('/etc/quicgate/users.yaml', root('config/users.example.yaml'))
            .replace('gateway_id: gw1', `gateway_id: gw${n}`)
            .replace('203.0.113.1', `203.0.113.${n}`),
        );
        const c = await loadServerConfig(file);
        expect(c).toMatchObject({ gatewayId: `gw${n}`, history: { backend: 'postgres' }, limits: { maxSessionsPerUser: 2 } });
        expect(c.fleet).toMatchObject({ redisUrl: 'redis://10.0.0.5:6379/0', sessionLeaseMs: 15_000, fallbackShare: 0.5 });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
