/**
 * `quicgate client`: load the client config (flags override the file), then run the tunnel client until
 * SIGINT/SIGTERM (clean close: the gateway frees the session at once, exit 0) or until the gateway refuses or
 * closes the session with retry false (wrong password, disabled or removed user, admin kill, quota, replaced
 * by a newer session): QG_ERR_REJECTED naming the reason, exit 3 (EXIT_REJECTED).
 */
import { readFileSync } from 'node:fs';
import { TunnelClient } from '../client/tunnel-client.js';
import { systemSettingsFor } from '../client/system-settings.js';
import { loadClientConfig } from '../config/client.js';
import { QuicgateError } from '../errors.js';
import { createLogger } from '../log.js';
import { connectTunnel } from '../transport/wt-client.js';
import { LinuxTun } from '../tun/linux.js';
import type { ClientCliOptions } from './main.js';
import { fail } from './fail.js';

export async function runClient(options: ClientCliOptions): Promise<void> {
  const config = await loadClientConfig(options.config ?? null, {
    server: options.server,
    user: options.user,
    passwordFile: options.passwordFile,
    transport: options.transport,
    caFile: options.ca,
    pinnedCertHashes: options.pin.length > 0 ? options.pin : undefined,
    tunName: options.tun,
  });
  const logger = createLogger({ level: config.logLevel });
  let caPem: string | undefined;
  if (config.caFile !== null) {
    try {
      caPem = readFileSync(config.caFile, 'utf8');
    } catch (err) {
      throw new QuicgateError('QG_ERR_TLS', `cannot read CA file ${config.caFile}: ${(err as Error).message}`);
    }
  }
  const client = new TunnelClient(config, {
    logger,
    connect: ({ previousAddresses }) =>
      connectTunnel({
        url: config.server,
        user: config.user,
        password: config.password,
        previousAddresses,
        transport: config.transport,
        ...(caPem === undefined ? {} : { caPem }),
        pinnedCertHashes: config.pinnedCertHashes,
        sendQueuePackets: 1024,
        logger,
        connectTimeoutMs: 10_000,
      }),
    openTun: (settings) => LinuxTun.open(settings),
    applySystem: (assignment) => systemSettingsFor(config, assignment, logger),
  });
  const stop = (signal: NodeJS.Signals): void => {
    logger.info({ signal }, 'closing the tunnel');
    void client.stop();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  const error = await client.run();
  if (error !== null) fail(error);
  process.exit(0);
}
