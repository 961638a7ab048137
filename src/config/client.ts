/**
 * Loading the client config: optional YAML file, then overrides (command-line flags), then defaults.
 *
 * Flow: file -> YAML + zod (schema.ts ClientFileSchema) ; overrides -> same schema, reported as
 * "<command line>" -> merged key by key (overrides win; a password from one source replaces a password_file
 * from the other) -> required fields -> password_file read -> defaults (defaults.ts) -> frozen ClientConfig.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { CLIENT_DEFAULTS, DEFAULTS_SOURCE, resolveClientConfig } from './defaults.js';
import { configInvalid, issueAt, issuesFromZod, parseYamlSource, readConfigFile, validate, type ConfigIssue, type YamlSource } from './load.js';
import { ClientFileSchema, type ClientFile } from './schema.js';
import type { ClientConfig } from './types.js';
import { formatDuration } from './units.js';

/** Values from the command line; same forms as the YAML keys (durations as "30s" etc.). */
export interface ClientConfigOverrides {
  readonly server?: string;
  readonly user?: string;
  readonly password?: string;
  readonly passwordFile?: string;
  readonly transport?: string;
  readonly caFile?: string | null;
  readonly pinnedCertHashes?: readonly string[];
  readonly tunName?: string;
  readonly setDns?: boolean;
  readonly reconnectInitial?: string;
  readonly reconnectMax?: string;
  /** A whole number, or "unlimited". */
  readonly reconnectMaxAttempts?: number | string;
  readonly deadAfterMissedKeepalives?: number | string;
  readonly logLevel?: string;
}

/** Label of the overrides in problem reports. */
export const OVERRIDES_SOURCE = '<command line>';

function digitsToNumber(v: number | string | undefined): number | string | undefined {
  return typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
}

/** Overrides as a ClientFile-shaped raw object; undefined values are left out. */
function overridesAsRaw(o: ClientConfigOverrides): Record<string, unknown> {
  const reconnect = Object.fromEntries(
    Object.entries({
      initial: o.reconnectInitial,
      max: o.reconnectMax,
      max_attempts: digitsToNumber(o.reconnectMaxAttempts),
    }).filter(([, v]) => v !== undefined),
  );
  const raw: Record<string, unknown> = {
    server: o.server,
    user: o.user,
    password: o.password,
    password_file: o.passwordFile,
    transport: o.transport,
    ca_file: o.caFile,
    pinned_cert_hashes: o.pinnedCertHashes,
    tun_name: o.tunName,
    set_dns: o.setDns,
    reconnect: Object.keys(reconnect).length > 0 ? reconnect : undefined,
    dead_after_missed_keepalives: digitsToNumber(o.deadAfterMissedKeepalives),
    log_level: o.logLevel,
  };
  return Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== undefined));
}

interface Layer {
  readonly values: ClientFile;
  /** File or OVERRIDES_SOURCE, for messages; YAML source for positions. */
  readonly label: string;
  readonly source: YamlSource | null;
  /** Where relative paths in this layer start. */
  readonly baseDir: string;
}

async function readPassword(layer: Layer, issues: ConfigIssue[]): Promise<string | null> {
  if (layer.values.password !== undefined) return layer.values.password;
  const file = resolve(layer.baseDir, layer.values.password_file!);
  try {
    const password = (await readFile(file, 'utf8')).replace(/\r?\n$/, '');
    if (password !== '') return password;
    issues.push(issueAt(layer.source, layer.label, ['password_file'], `password file ${file} is empty`));
  } catch (err) {
    const code = err instanceof Error && 'code' in err ? String(err.code) : 'unreadable';
    issues.push(issueAt(layer.source, layer.label, ['password_file'], `cannot read password file ${file} (${code})`));
  }
  return null;
}

/**
 * Client config from an optional YAML file and overrides. Throws QG_ERR_CONFIG_NOT_FOUND for a missing file
 * and QG_ERR_CONFIG_INVALID listing every problem.
 */
export async function loadClientConfig(path: string | null, overrides: ClientConfigOverrides = {}): Promise<ClientConfig> {
  const issues: ConfigIssue[] = [];
  const layers: Layer[] = [];

  if (path !== null) {
    const file = resolve(path);
    const parsed = parseYamlSource(await readConfigFile(file), file);
    issues.push(...parsed.issues);
    if (parsed.issues.length === 0) {
      const result = validate(ClientFileSchema, parsed.source);
      if (result.ok) layers.push({ values: result.value, label: file, source: parsed.source, baseDir: dirname(file) });
      else issues.push(...result.issues);
    }
  }
  const fromFlags = ClientFileSchema.safeParse(overridesAsRaw(overrides), { reportInput: true });
  if (fromFlags.success) layers.push({ values: fromFlags.data, label: OVERRIDES_SOURCE, source: null, baseDir: process.cwd() });
  else issues.push(...issuesFromZod(ClientFileSchema, fromFlags.error, null, OVERRIDES_SOURCE));
  if (issues.length > 0) throw configInvalid(issues);

  for (const layer of layers) {
    if (layer.values.password !== undefined && layer.values.password_file !== undefined) {
      issues.push(issueAt(layer.source, layer.label, ['password_file'], 'expected either password or password_file, not both'));
    }
  }

  // Later layers win key by key; reconnect is merged per key; the password comes from one layer only.
  let merged: ClientFile = {};
  let passwordLayer: Layer | null = null;
  for (const layer of layers) {
    merged = { ...merged, ...layer.values, reconnect: { ...merged.reconnect, ...layer.values.reconnect } };
    if (layer.values.password !== undefined || layer.values.password_file !== undefined) passwordLayer = layer;
  }
  const last = layers.at(-1);
  const label = path === null ? OVERRIDES_SOURCE : resolve(path);
  const fileSource = layers.find((l) => l.source !== null)?.source ?? null;
  const { server, user } = merged;
  if (server === undefined) issues.push(issueAt(fileSource, label, [], 'required: expected the gateway URL such as "https://vpn.example.net:4433/" (or --server)', 'server'));
  if (user === undefined) issues.push(issueAt(fileSource, label, [], 'required: expected the user name (or --user)', 'user'));
  if (passwordLayer === null) issues.push(issueAt(fileSource, label, [], 'required: expected password or password_file (or --password-file)', 'password'));
  const initial = merged.reconnect?.initial ?? CLIENT_DEFAULTS.reconnectInitialMs;
  const max = merged.reconnect?.max ?? CLIENT_DEFAULTS.reconnectMaxMs;
  if (initial > max) {
    issues.push(issueAt(fileSource, label, ['reconnect', 'initial'], `expected at most reconnect.max (${formatDuration(max)}), got ${formatDuration(initial)}`));
  }
  const password = passwordLayer === null ? null : await readPassword(passwordLayer, issues);
  if (issues.length > 0 || server === undefined || user === undefined || password === null) throw configInvalid(issues);

  // ca_file is relative to the layer it came from.
  const caLayer = [...layers].reverse().find((l) => l.values.ca_file !== undefined) ?? last;
  const config = resolveClientConfig(
    { ...merged, server, user },
    { source: path === null ? DEFAULTS_SOURCE : resolve(path), baseDir: caLayer?.baseDir ?? process.cwd(), password },
  );
  return Object.freeze({
    ...config,
    pinnedCertHashes: Object.freeze([...config.pinnedCertHashes]),
    reconnect: Object.freeze({ ...config.reconnect }),
  });
}
