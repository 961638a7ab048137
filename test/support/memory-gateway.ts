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
  TunnelConnection,
  TunnelListener,
} from '../../src/transport/types.js';
import { MemoryTun } from '../../src/tun/memory.js';

export class MemoryListener implements TunnelListener {
  readonly kinds = ['memory'] as const;
  private handler: ((accepted: AcceptedConnection) => void) | null = null;
  closed = false;

  constructor(private readonly admission: Admission) {}

  onConnection(handler: (accepted: AcceptedConnection) => void): void {
    this.handler = handler;
  }

  /** Run admission; on success hand the server side to the gateway and return the pair. */
  async connect(request: Partial<ConnectRequest> & { user: string; password: string }): Promise<
    { ok: true; pair: MemoryPair; client: TunnelConnection } | { ok: false; result: AdmissionResult }
  > {
    const full: ConnectRequest = {
      sourceAddress: '192.0.2.11',
      peer: '192.0.2.11:40000',
      previousAddresses: [],
      clientVersion: 'test',
      transport: 'memory',
      ...request,
    };
    const result = await this.admission(full);
    if (!result.ok) return { ok: false, result };
    const pair = createMemoryPair({ clientPeer: full.peer });
    this.handler?.({ connection: pair.server, request: full });
    return { ok: true, pair, client: pair.client };
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

export interface MemoryGateway {
  readonly gateway: Gateway;
  readonly tun: MemoryTun;
  readonly listener: MemoryListener;
}

export async function startMemoryGateway(config: ServerConfig, clock?: Clock): Promise<MemoryGateway> {
  let tun: MemoryTun | null = null;
  let listener: MemoryListener | null = null;
  const gateway = await Gateway.start(config, {
    logger: silentLogger(),
    ...(clock ? { clock } : {}),
    openTun: async (settings) => (tun = new MemoryTun({ name: settings.name, mtu: settings.mtu })),
    listen: async ({ admission }) => (listener = new MemoryListener(admission)),
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
