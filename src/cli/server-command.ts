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
import { combineListeners } from '../transport/combined-listener.js';
import { listenError } from '../transport/listen-error.js';
import { detectQuic, type QuicSupport } from '../transport/quic-native.js';
import { createQuicListener, type QuicTunnelListener } from '../transport/quic-server.js';
import type { TransportKind } from '../transport/types.js';
import { QuicgateError } from '../errors.js';

const TRANSPORT_NAMES: Record<TransportKind, string> = { quic: 'QUIC', h2: 'HTTP/2', h3: 'HTTP/3', memory: 'memory' };

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
  const quic: QuicSupport = config.transports.quic === 'off' ? { available: false, reason: 'turned off in config' } : detectQuic();
  const tls = await prepareServerTls(config, logger);
  let certificatePem = tls.certPem;
  const gateway = await Gateway.start(config, {
    logger,
    openTun: (settings) => LinuxTun.open(settings),
    listen: async ({ admission, throttle }) => {
      // HTTP/2 (TCP) and, when on, the library's HTTP/3; not at all when both are off (quic only).
      const wt =
        config.transports.h2 || http3.available
          ? await createTunnelListener({
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
            })
          : null;
      let native: QuicTunnelListener | null = null;
      if (quic.available) {
        try {
          native = createQuicListener({
            addon: quic.addon,
            host: config.listen,
            port: wt?.port ?? config.port,
            cert: tls.certPem,
            key: tls.keyPem,
            admission,
            sendQueuePackets: config.sendQueuePackets,
            logger,
            limits: config.connections,
            ...(throttle === undefined ? {} : { throttle }),
          });
        } catch (err) {
          await wt?.close();
          throw listenError('the tunnel listener (QUIC)', 'UDP', config.listen, wt?.port ?? config.port, err);
        }
      }
      tls.onRenewed((certPem, keyPem) => {
        certificatePem = certPem;
        if (wt !== null) void wt.updateCertificate(certPem, keyPem);
        native?.updateCertificate(certPem, keyPem);
      });
      const listener = combineListeners([...(native === null ? [] : [native]), ...(wt === null ? [] : [wt])]);
      if (listener.kinds.length === 0) throw new QuicgateError('QG_ERR_LISTEN', 'no transport left to serve (h2 false, h3 and quic unavailable or off)');
      logger.info(
        {
          transports: listener.kinds,
          quic: quic.available ? { ngtcp2: quic.addon.ngtcp2Version, gnutls: quic.addon.gnutlsVersion } : { reason: quic.reason },
          http3: listener.kinds.includes('h3'),
          ...(http3.available ? (wt?.http3Unavailable === undefined ? {} : { reason: wt.http3Unavailable }) : { reason: http3.reason }),
        },
        `serving ${listener.kinds.map((k) => TRANSPORT_NAMES[k]).join(', ')}`,
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
