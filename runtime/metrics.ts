/**
 * Prometheus metrics of a process (prom-client), served on their own listener,
 * PATCHNANNY_METRICS_LISTEN (host:port; unset = no listener), never on the API's or the gate's
 * agent-facing port: metrics are unauthenticated and meant for the internal network only. The
 * metric names, types and labels are listed in docs/observability.md. Labels never carry a
 * token, a raw URL path or free text.
 */
import { createServer, type Server } from 'node:http';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { hostPort, joinHostPort, splitHostPort } from './listen';
import type { Log } from './log';

/** PATCHNANNY_METRICS_LISTEN: where GET /metrics is served; unset (the default) serves none. */
export const MetricsListenSetting = hostPort('PATCHNANNY_METRICS_LISTEN').optional();

/** A registry with Node's process metrics (process_*, nodejs_*), for one process. */
export function createRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

export interface MetricsServer {
  /** host:port it listens on (the bound port when 0 was asked). */
  address: string;
  close(): Promise<void>;
}

/**
 * Serve GET /metrics: the registry's text, then `extra` (the Temporal SDK's own metrics, read
 * from its exporter on loopback) when given. A failing `extra` costs its part, not the scrape.
 */
export async function serveMetrics(
  listen: string,
  registry: Registry,
  log: Log,
  extra?: () => Promise<string>,
): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('GET /metrics\n');
      return;
    }
    void (async () => {
      try {
        let text = await registry.metrics();
        if (extra)
          text += await extra().catch((err: unknown) => `# Temporal SDK metrics unavailable: ${String(err)}\n`);
        res.writeHead(200, { 'content-type': registry.contentType }).end(text);
      } catch (err) {
        log.warn({ err }, 'metrics scrape failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n');
      }
    })();
  });
  const { host, port } = splitHostPort(listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = joinHostPort(host, (server.address() as { port: number }).port);
  log.info({ metrics: address }, `metrics on http://${address}/metrics`);
  return { address, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** Seconds since `start` (process.hrtime.bigint()), for a histogram. */
export const secondsSince = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e9;
