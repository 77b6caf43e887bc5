/**
 * The Temporal SDK's Runtime for a process that runs Workers (API + control worker, agent):
 * installed once, before any connection. Its logs, the Rust core's forwarded too, go into the
 * process's JSON log; with metrics on, the core's own metrics (temporal_* — polls, task
 * latencies, slots, sticky cache, request failures) are exported by its Prometheus exporter on a
 * loopback port of its own and appended to the process's /metrics (runtime/metrics.ts).
 */
import { Runtime } from '@temporalio/worker';
import type { LogLevel as SdkLevel } from '@temporalio/common';
import { freePort } from './listen';
import { sdkLogger, type Log, type LogLevel } from './log';

export interface SdkRuntime {
  /** The core exporter's text, for serveMetrics' `extra`; absent when metrics are off. */
  metricsText?: () => Promise<string>;
}

export async function installSdkRuntime(log: Log, level: LogLevel, metrics: boolean): Promise<SdkRuntime> {
  // The core only writes to the address it is given and reports no port back: a free loopback
  // port is taken just before (nobody else binds it in that instant on a host of ours).
  const address = metrics ? `127.0.0.1:${await freePort()}` : undefined;
  const core = level.toUpperCase() as SdkLevel;
  Runtime.install({
    logger: sdkLogger(log),
    telemetryOptions: {
      // The core's own lines are noisy below WARN (every poll); PATCHNANNY_LOG_LEVEL=debug brings them.
      logging: {
        filter: { core: level === 'debug' || level === 'trace' ? core : 'WARN', other: 'ERROR' },
        forward: {},
      },
      ...(address ? { metrics: { prometheus: { bindAddress: address } } } : {}),
    },
  });
  if (!address) return {};
  return {
    metricsText: async () => {
      const res = await fetch(`http://${address}/metrics`, { signal: AbortSignal.timeout(2000) });
      if (!res.ok) throw new Error(`the SDK exporter answered ${res.status}`);
      return res.text();
    },
  };
}
