/**
 * Simulated hosts (forked by run.ts): one process hosting one Worker per host task queue on a
 * single NativeConnection, as a single machine can simulate a fleet.
 *
 * - `agent` mode runs the real agent activities (createAgentActivities: hash-verify, then the
 *   script executed with bash and parsed) on `agent.<id>`, against the bench fixture script,
 *   which prints a fixed small plan instantly. The verified script is downloaded through the
 *   API once per process (one state dir per process) before the Workers start; hashVerify
 *   re-uses that stored, re-verified copy afterwards, exactly as a real agent does.
 * - `bare` mode hosts the baseline's empty `dryRun`/`apply` activities on the same Worker options.
 *
 * Worker options that keep ~1,000 Workers on one connection viable (`sim`): one activity
 * poller and two execution slots per host. A patch run gives a host one activity at a time, so
 * one long poll per host is enough; the SDK default (pollers = min(10, 100 slots)) would hold
 * ~10 polls open per host.
 */
import { readFileSync } from 'node:fs';
import { Context } from '@temporalio/activity';
import { connectWorker, TemporalEnv } from '../runtime/temporal';
import { DefaultLogger, Runtime, Worker, type WorkerOptions } from '@temporalio/worker';
import { createAgentActivities } from '../activities/agent';
import { ApiClient } from '../agent-worker/api-client';
import { tell } from './ipc';

export interface SimHost {
  taskQueue: string;
  agentId?: string;
  token?: string;
}

export interface SimConfig {
  mode: 'agent' | 'bare';
  address: string;
  namespace: string;
  /** `sim`: few pollers and slots per host (fleet simulation); `default`: the SDK's defaults. */
  options: 'sim' | 'default';
  hosts: SimHost[];
  apiUrl?: string;
  stateDir?: string;
  scriptName?: string;
  scriptSha256?: string;
  /**
   * Unset: one connection for every host (the fleet simulation). `direct`: one connection per
   * host, as separate agent processes would have. `token`: one per host carrying that host's agent
   * token, for `address` = the agent gate.
   */
  perHost?: 'direct' | 'token';
}

export const SIM_WORKER_OPTIONS: Partial<WorkerOptions> = {
  maxConcurrentActivityTaskExecutions: 2,
  activityTaskPollerBehavior: { type: 'simple-maximum', maximum: 1 },
};

function activitiesFor(config: SimConfig, host: SimHost): object {
  if (config.mode === 'bare') {
    return {
      dryRun() {
        tell({
          type: 'activity',
          name: 'dryRun',
          workflowId: Context.current().info.workflowExecution?.workflowId ?? '',
          at: Date.now(),
        });
      },
      async apply() {},
    };
  }
  const api = new ApiClient(config.apiUrl!, host.token!);
  // Hash only: the bench measures the workflow path, its fixture script is not signed.
  return createAgentActivities({
    family: 'apt',
    stateDir: config.stateDir!,
    fetchScript: (name) => api.script(name),
    trustedScriptKeys: [],
  });
}

async function main(): Promise<void> {
  const config = JSON.parse(readFileSync(process.argv[2], 'utf8')) as SimConfig;
  Runtime.install({ logger: new DefaultLogger('WARN') });
  process.on('disconnect', () => process.exit(0)); // the driver is gone

  if (config.mode === 'agent') {
    // Download and verify the script once for this state dir, before any Worker polls.
    const first = config.hosts[0];
    const warm = activitiesFor(config, first) as ReturnType<typeof createAgentActivities>;
    await warm.hashVerify({ scriptName: config.scriptName!, sha256: config.scriptSha256! });
  }

  const started = Date.now();
  const env = TemporalEnv.parse({ TEMPORAL_ADDRESS: config.address, TEMPORAL_NAMESPACE: config.namespace });
  const shared = config.perHost ? null : (await connectWorker(env)).connection;
  const connectionFor = async (host: SimHost) =>
    shared ?? (await connectWorker(env, config.perHost === 'token' ? { agentToken: host.token } : {})).connection;
  const workers: Worker[] = [];
  const queue = [...config.hosts];
  await Promise.all(
    Array.from({ length: Math.min(25, queue.length) }, async () => {
      for (let host = queue.shift(); host; host = queue.shift()) {
        workers.push(
          await Worker.create({
            connection: await connectionFor(host),
            namespace: config.namespace,
            taskQueue: host.taskQueue,
            activities: activitiesFor(config, host),
            ...(config.options === 'sim' ? SIM_WORKER_OPTIONS : {}),
          }),
        );
      }
    }),
  );
  for (const w of workers) {
    w.run().catch((err) => {
      console.error(`worker on ${w.options.taskQueue} failed:`, err);
      process.exit(1);
    });
  }
  tell({ type: 'ready', workers: workers.length, startMs: Date.now() - started });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
