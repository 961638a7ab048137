/**
 * The server config as the operator commands need it: which file holds the users, the default bandwidth, the
 * admin API's address and token. Only the server file itself is read (shape-checked with the same schema as
 * the gateway), not its users file: `users add` must work before the users file exists, and `sessions kill`
 * while someone is halfway through editing it.
 */
import { dirname, resolve } from 'node:path';
import { resolveServerConfig } from '../config/defaults.js';
import { configInvalid, parseYamlSource, readConfigFile, validate } from '../config/load.js';
import { ServerFileSchema } from '../config/schema.js';
import type { ServerConfig } from '../config/types.js';

/** Environment variable naming the server config when --config is not given. */
export const CONFIG_ENV = 'QUICGATE_CONFIG';

export interface ServerFileSettings {
  /** Resolved config; `users` holds inline users only (the users file is not read). */
  readonly config: ServerConfig;
  /** True when the file lists users inline under `users:` rather than naming a users_file. */
  readonly inlineUsers: boolean;
}

/** --config, else $QUICGATE_CONFIG, else none. */
export function configPathFrom(option: string | undefined, env: Readonly<Record<string, string | undefined>>): string | null {
  const path = option ?? env[CONFIG_ENV];
  return path === undefined || path === '' ? null : path;
}

/** Reads and shape-checks a server config file; throws QG_ERR_CONFIG_NOT_FOUND / QG_ERR_CONFIG_INVALID. */
export async function readServerFileSettings(path: string): Promise<ServerFileSettings> {
  const file = resolve(path);
  const { source, issues } = parseYamlSource(await readConfigFile(file), file);
  if (issues.length > 0) throw configInvalid(issues);
  const result = validate(ServerFileSchema, source);
  if (!result.ok) throw configInvalid(result.issues);
  const baseDir = dirname(file);
  const named = result.value.users_file;
  const config = resolveServerConfig(result.value, {
    source: file,
    baseDir,
    userEntries: result.value.users ?? [],
    usersFile: named === undefined ? null : resolve(baseDir, named),
  });
  return { config, inlineUsers: result.value.users !== undefined };
}
