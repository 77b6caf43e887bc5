import { existsSync } from 'node:fs';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { temporalConnectionConfig, type TemporalEnv } from '../contract/temporal';

export async function connectClient(env: TemporalEnv): Promise<Client> {
  const cfg = temporalConnectionConfig(env);
  const connection = await Connection.connect({ address: cfg.address, tls: cfg.tls, apiKey: cfg.apiKey });
  return new Client({ connection, namespace: cfg.namespace });
}

export async function connectWorker(env: TemporalEnv): Promise<{ connection: NativeConnection; namespace: string }> {
  const cfg = temporalConnectionConfig(env);
  const connection = await NativeConnection.connect({ address: cfg.address, tls: cfg.tls, apiKey: cfg.apiKey });
  return { connection, namespace: cfg.namespace };
}

/** The workflow bundle `npm run build` writes; bundling costs ~2 s, so it is done once at build. */
export const WORKFLOW_BUNDLE = path.resolve(__dirname, '../workflow-bundle.js');

export function workflowSource(): { workflowBundle: { codePath: string } } | { workflowsPath: string } {
  if (existsSync(WORKFLOW_BUNDLE)) return { workflowBundle: { codePath: WORKFLOW_BUNDLE } };
  return { workflowsPath: require.resolve('../workflows') };
}
