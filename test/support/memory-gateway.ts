/**
 * A real Gateway over in-memory parts: MemoryTun for the kernel side, and a listener that hands the gateway
 * the server side of a createMemoryPair() after running the gateway's own admission, like the WebTransport
 * listener does. Tests hold the client side.
 */
import type { Clock } from '../../src/clock.js';
import type { ServerConfig } from '../../src/config/types.js';
import { Gateway } from '../../src/gateway/server.js';
import { silentLogger } from '../../src/log.js';
import type { AssignControl, ControlMessage } from '../../src/transport/control.js';
import { createMemoryPair, type MemoryPair } from '../../src/transport/memory.js';
import type {
  AcceptedConnection,
  Admission,
  AdmissionResult,
  ConnectRequest,
  ResumeClaim,
  TransportKind,
  TunnelConnection,
  TunnelListener,
} from '../../src/transport/types.js';
import { MemoryTun } from '../../src/tun/memory.js';

export class MemoryListener implements TunnelListener {
  readonly kinds: readonly TransportKind[] = ['h2', 'h3'];
  closed = false;
  private handler: ((accepted: AcceptedConnection) => void) | null = null;
  private port = 50_000;

  /** `superPackets`: the pairs announce framing version 2 and carry super-packets (as HTTP/2 does). */
  constructor(
    private readonly admission: Admission,
    private readonly superPackets = false,
  ) {}

  onConnection(handler: (accepted: AcceptedConnection) => void): void {
    this.handler = handler;
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /** Run the gateway's admission as the real listener does; on success hand the server side to the gateway. */
  async connect(
    user: string,
    password: string,
    options: { transport?: TransportKind; previousAddresses?: readonly string[]; sourceAddress?: string; maxDatagramBytes?: number; resume?: ResumeClaim | null } = {},
  ): Promise<{ pair: MemoryPair } | { refused: AdmissionResult }> {
    const source = options.sourceAddress ?? '192.0.2.7';
    const pair = createMemoryPair({
      clientPeer: `${source}:${this.port++}`,
      superPackets: this.superPackets,
      ...(options.maxDatagramBytes === undefined ? {} : { maxDatagramBytes: options.maxDatagramBytes }),
    });
    const request: ConnectRequest = {
      user,
      password,
      sourceAddress: source,
      peer: pair.server.peer,
      previousAddresses: options.previousAddresses ?? [],
      clientVersion: 'test',
      resume: options.resume ?? null,
      transport: options.transport ?? 'h2',
    };
    const result = await this.admission(request);
    if (!result.ok) return { refused: result };
    if (this.handler === null) throw new Error('gateway did not register a connection handler');
    this.handler({ connection: pair.server, request });
    return { pair };
  }
}

export interface MemoryGateway {
  readonly gateway: Gateway;
  readonly tun: MemoryTun;
  readonly listener: MemoryListener;
}

/** `superPackets.tun`: a TUN that reads super-packets (injectSuper); `.links`: connections that carry them. */
export async function startMemoryGateway(
  config: ServerConfig,
  clock?: Clock,
  superPackets: { readonly tun?: boolean; readonly links?: boolean } = {},
): Promise<MemoryGateway> {
  let tun: MemoryTun | null = null;
  let listener: MemoryListener | null = null;
  const gateway = await Gateway.start(config, {
    logger: silentLogger(),
    ...(clock ? { clock } : {}),
    openTun: async (settings) => (tun = new MemoryTun({ name: settings.name, mtu: settings.mtu, superPackets: superPackets.tun ?? false })),
    listen: async ({ admission }) => (listener = new MemoryListener(admission, superPackets.links ?? false)),
  });
  return { gateway, tun: tun!, listener: listener! };
}

/** Resolves with the first control message of `type` the client receives. */
export function nextControl<T extends ControlMessage['type']>(
  client: TunnelConnection,
  type: T,
): Promise<Extract<ControlMessage, { type: T }>> {
  return new Promise((resolve) => {
    client.setControlHandler((message) => {
      if (message.type === type) resolve(message as Extract<ControlMessage, { type: T }>);
    });
  });
}

export type { AssignControl };
