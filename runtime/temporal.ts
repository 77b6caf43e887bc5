/**
 * The one way every process (API, control worker, agent, benchmark, dev tools) reaches Temporal:
 * a local dev server, a self-hosted cluster or Temporal Cloud, configured by the same variables.
 * Node-only (reads certificate files); workflow code never imports it.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { z } from 'zod';
import { LogLevelSetting } from './log';
import { MetricsListenSetting } from './metrics';

export const TemporalEnv = z.object({
  TEMPORAL_ADDRESS: z.string().min(1).default('127.0.0.1:7233'),
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
  /** mTLS client certificate and key (PEM paths), for a secured cluster or Temporal Cloud. */
  TEMPORAL_TLS_CERT: z.string().optional(),
  TEMPORAL_TLS_KEY: z.string().optional(),
  /** CA bundle for a server certificate not signed by a public CA. */
  TEMPORAL_TLS_CA: z.string().optional(),
  TEMPORAL_TLS_SERVER_NAME: z.string().optional(),
  /** Temporal Cloud API key, instead of mTLS. */
  TEMPORAL_API_KEY: z.string().optional(),
  /** This process's log level (its own JSON lines and the Temporal SDK's): trace, debug, info (default), warn, error. */
  PATCHNANNY_LOG_LEVEL: LogLevelSetting,
  /** host:port of this process's Prometheus GET /metrics (internal network only); unset: none. */
  PATCHNANNY_METRICS_LISTEN: MetricsListenSetting,
});
export type TemporalEnv = z.infer<typeof TemporalEnv>;

/** Address, TLS and API key as both the client `Connection` and the worker `NativeConnection` take them. */
function connectionOptions(env: TemporalEnv) {
  if ((env.TEMPORAL_TLS_CERT === undefined) !== (env.TEMPORAL_TLS_KEY === undefined)) {
    throw new Error('TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together: set both or neither');
  }
  const secured = Boolean(env.TEMPORAL_TLS_CERT || env.TEMPORAL_TLS_CA || env.TEMPORAL_API_KEY);
  return {
    address: env.TEMPORAL_ADDRESS,
    apiKey: env.TEMPORAL_API_KEY,
    tls: secured
      ? {
          serverNameOverride: env.TEMPORAL_TLS_SERVER_NAME,
          serverRootCACertificate: env.TEMPORAL_TLS_CA ? readFileSync(env.TEMPORAL_TLS_CA) : undefined,
          clientCertPair:
            env.TEMPORAL_TLS_CERT && env.TEMPORAL_TLS_KEY
              ? { crt: readFileSync(env.TEMPORAL_TLS_CERT), key: readFileSync(env.TEMPORAL_TLS_KEY) }
              : undefined,
        }
      : undefined,
  };
}

/** A client (start workflows, Updates, Schedules, operator calls). */
export async function connectClient(env: TemporalEnv, opts: { connectTimeoutMs?: number } = {}): Promise<Client> {
  const connection = await Connection.connect({ ...connectionOptions(env), connectTimeout: opts.connectTimeoutMs });
  return new Client({ connection, namespace: env.TEMPORAL_NAMESPACE });
}

/**
 * A worker connection and its namespace (control worker, agents). An agent passes `agentToken`: it
 * connects to the agent gate (TEMPORAL_ADDRESS points at it) and authenticates with its own token
 * as `authorization: Bearer <token>`. Sent as metadata, not `apiKey`: the SDK turns TLS on for an
 * `apiKey`, and a gate on loopback (npm start, tests) serves plaintext.
 */
export async function connectWorker(
  env: TemporalEnv,
  opts: { agentToken?: string } = {},
): Promise<{ connection: NativeConnection; namespace: string }> {
  const base = connectionOptions(env);
  const connection = await NativeConnection.connect(
    opts.agentToken === undefined ? base : { ...base, metadata: { authorization: `Bearer ${opts.agentToken}` } },
  );
  return { connection, namespace: env.TEMPORAL_NAMESPACE };
}

/** The workflow bundle `npm run build` writes; bundling costs ~2 s, so it is done once at build. */
export const WORKFLOW_BUNDLE = path.resolve(__dirname, '../workflow-bundle.js');

export function workflowSource(): { workflowBundle: { codePath: string } } | { workflowsPath: string } {
  if (existsSync(WORKFLOW_BUNDLE)) return { workflowBundle: { codePath: WORKFLOW_BUNDLE } };
  return { workflowsPath: require.resolve('../workflows') };
}

/** Parse an env object with a zod schema, failing fast with every bad variable named. */
export function parseEnv<S extends z.ZodType>(schema: S, env: NodeJS.ProcessEnv = process.env): z.infer<S> {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new Error(`invalid configuration:\n${lines.join('\n')}`);
  }
  return parsed.data;
}
