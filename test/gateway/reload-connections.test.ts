/**
 * The connection bounds (`connections.*`) are read once by the tunnel listener: a reload that changes them keeps
 * the running values and reports them as needing a restart.
 */
import { describe, expect, it } from 'vitest';
import { serverConfig } from '../support/config-fixture.js';
import { startMemoryGateway } from '../support/memory-gateway.js';

describe('reload of connections.*', () => {
  it('is reported as needing a restart and the running bounds stay', async () => {
    const config = serverConfig();
    const g = await startMemoryGateway(config);
    try {
      const summary = g.gateway.reload({ ...config, connections: { ...config.connections, maxPendingPerSource: 2 } });
      expect(summary.needRestart).toContain('connections');
      expect(g.gateway.currentConfig.connections).toEqual(config.connections);
      expect(g.gateway.reload(config).needRestart).not.toContain('connections');
    } finally {
      await g.gateway.stop();
    }
  });
});
