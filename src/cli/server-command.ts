/**
 * `quicgate server`: validate config, open the TUN, serve, and stay up until SIGTERM/SIGINT, which close
 * every session with a reason before exiting cleanly. SIGHUP re-reads config and users (live reload).
 */
import type { Logger } from 'pino';
import { loadServerConfig } from '../config/load.js';
import type { ServerConfig } from '../config/types.js';
import { attachOperatorSurface, openHistory, type OpenedHistory } from '../gateway/operator.js';
import { ReloadQueue } from '../gateway/reload-queue.js';
import { Gateway, logStartFailure } from '../gateway/server.js';
import { prepareServerTls } from '../gateway/server-tls.js';
import { createLogger } from '../log.js';
import { LinuxTun } from '../tun/linux.js';
import { detectHttp3 } from '../transport/http3.js';
import { createTunnelListener } from '../transport/wt-server.js';

export interface ServerCommandOptions {
  readonly config?: string;
}

export async function runServer(options: ServerCommandOptions): Promise<void> {
  const configPath = options.config ?? null;
  const config = await loadServerConfig(configPath);
  const logger = createLogger({ level: config.logLevel });
  logger.info({ config: config.source, users: config.users.length }, 'config loaded');
  // The history's worker checks and opens the database while the gateway starts (both take a moment).
  const history = openHistory(config, logger);
  try {
    await serve(configPath, config, logger, history);
  } catch (err) {
    await (await history).history?.close();
    throw err;
  }
}

async function serve(configPath: string | null, config: ServerConfig, logger: Logger, history: Promise<OpenedHistory>): Promise<void> {
  const http3 = config.transports.h3 === 'off' ? { available: false as const, reason: 'turned off in config' } : await detectHttp3();
  const tls = await prepareServerTls(config, logger);
  let certificatePem = tls.certPem;
  const gateway = await Gateway.start(config, {
    logger,
    openTun: (settings) => LinuxTun.open(settings),
    listen: async ({ admission, throttle }) => {
      const listener = await createTunnelListener({
        host: config.listen,
        port: config.port,
        cert: tls.certPem,
        key: tls.keyPem,
        admission,
        sendQueuePackets: config.sendQueuePackets,
        logger,
        http3: http3.available ? 'auto' : 'off',
        limits: config.connections,
        throttle,
        http2: config.transports.h2,
      });
      tls.onRenewed((certPem, keyPem) => {
        certificatePem = certPem;
        void listener.updateCertificate(certPem, keyPem);
      });
      logger.info(
        { http3: listener.kinds.includes('h3'), reason: http3.available ? listener.http3Unavailable : http3.reason },
        listener.kinds.includes('h3') ? 'serving HTTP/3 and HTTP/2' : 'serving HTTP/2 only',
      );
      return listener;
    },
  });
  if (tls.caFile !== null) logger.info({ ca: tls.caFile, pin: tls.pin }, 'clients verify the gateway with this CA (or pin)');

  // gateway.reload logs every changed setting and how it took effect.
  const reloads = new ReloadQueue(async () => gateway.reload(await loadServerConfig(configPath)));
  let surface;
  try {
    surface = await attachOperatorSurface(gateway, {
      config,
      logger,
      reload: () => reloads.run(),
      tunUp: () => gateway.tunOpen,
      history,
      certificatePem: () => certificatePem,
    });
  } catch (err) {
    // e.g. the admin port in use: say so in the log too, and end the sessions cleanly before exiting.
    logStartFailure(logger, err);
    await gateway.stop('error');
    throw err;
  }

  let stopping = false;
  const shutdown = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    tls.stop();
    // The surface stops the gateway first (every session ends with a reason), then flushes the history.
    surface.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  // The same path as POST /api/reload (the quota enforcer applies quota changes at once there too).
  process.on('SIGHUP', () => {
    surface.backend.reload().catch((err: unknown) =>
      logger.error({ err: err instanceof Error ? err.message : String(err) }, 'reload refused; the running config stays'),
    );
  });
}
