/**
 * `quicgate client`: load the client config (flags override the file), then run the tunnel client until
 * SIGINT/SIGTERM (clean close: the gateway frees the session at once, exit 0), or until it stops for good with
 * a one-line reason on stderr (exit codes in src/cli/fail.ts and docs/operations.md): the gateway refuses or
 * closes the session with retry false (QG_ERR_REJECTED, exit 3), the gateway's certificate does not verify
 * (QG_ERR_TLS, exit 2), reconnect.max_attempts failed in a row (QG_ERR_CONNECT_FAILED, exit 1).
 */
import { readFileSync } from 'node:fs';
import { TunnelClient } from '../client/tunnel-client.js';
import { pollingPathWatch } from '../client/path-watch.js';
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
    connect: ({ previousAddresses, resume }) =>
      connectTunnel({
        url: config.server,
        user: config.user,
        password: config.password,
        previousAddresses,
        resume,
        transport: config.transport,
        ...(caPem === undefined ? {} : { caPem }),
        pinnedCertHashes: config.pinnedCertHashes,
        sendQueuePackets: 1024,
        logger,
        connectTimeoutMs: 10_000,
      }),
    openTun: (settings) => LinuxTun.open(settings),
    applySystem: (assignment) => systemSettingsFor(config, assignment, logger),
    watchPath: pollingPathWatch(config.tunName),
  });
  const stop = (signal: NodeJS.Signals): void => {
    logger.info({ signal }, 'closing the tunnel');
    void client.stop();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  // The client's timers do not hold the event loop (the Clock unrefs them): while it waits to reconnect with
  // nothing else open, this keeps the process alive until run() settles, instead of exiting 0 mid-backoff.
  const alive = setInterval(() => {}, 1 << 30);
  const error = await client.run().finally(() => clearInterval(alive));
  if (error !== null) fail(error);
  process.exit(0);
}
