/**
 * The host agent: `node dist/agent-worker/main.js [--api-url URL] [--state-dir DIR] …` (or the env
 * names); `--check-config <file>` validates a configuration file and exits (0 good, 1 with every problem).
 */
import { createLog, errorText, logLevelOf } from '../runtime/log';
import { createRegistry, serveMetrics } from '../runtime/metrics';
import { installSdkRuntime } from '../runtime/sdk-runtime';
import { parseEnv } from '../runtime/temporal';
import { createAgent } from './agent';
import { AgentRevokedError } from './api-client';
import { checkAgentConfigFile } from './check-config';
import { AgentEnv, EXIT_REVOKED, flagsToEnv, forgetEnrolmentEnv } from './config';

function checkConfig(file: string | undefined): never {
  if (!file) {
    console.error('usage: main.js --check-config <file>');
    process.exit(2);
  }
  const result = checkAgentConfigFile(file);
  if (result.ok) {
    console.log(`config OK: ${file}: ${result.summary}`);
    process.exit(0);
  }
  console.error(`invalid agent configuration in ${file}:\n${result.problems.map((p) => `  ${p}`).join('\n')}`);
  process.exit(1);
}

const log = createLog('agent', logLevelOf());

async function main(): Promise<void> {
  if (process.argv[2] === '--check-config') checkConfig(process.argv[3]);
  const env = parseEnv(AgentEnv, { ...process.env, ...flagsToEnv(process.argv.slice(2)) });
  // From here on the token lives only in `env` until registration: patch scripts inherit process.env.
  forgetEnrolmentEnv();
  const metrics = env.PATCHNANNY_METRICS_LISTEN ? createRegistry() : undefined;
  const sdk = await installSdkRuntime(log, env.PATCHNANNY_LOG_LEVEL, metrics !== undefined);
  const metricsServer =
    metrics && env.PATCHNANNY_METRICS_LISTEN
      ? await serveMetrics(env.PATCHNANNY_METRICS_LISTEN, metrics, log, sdk.metricsText)
      : undefined;
  // The Worker shuts down on these signals (the SDK's defaults) and waits for running
  // activities; the agent's own part is to stop running dry-runs at once (applies run on).
  const stopping = new AbortController();
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGQUIT', 'SIGUSR2'] as const)
    process.once(signal, () => stopping.abort(signal));
  const created = await createAgent(env, log, metrics, stopping.signal);
  if (!created) return void (await metricsServer?.close()); // stopped while waiting for acceptance
  const { agent, worker, connection, api, node } = created;
  log.info(
    { agentId: agent.id, taskQueue: agent.taskQueue },
    `${agent.id} (${agent.os.prettyName || agent.os.id}, ${agent.family}) polling ${agent.taskQueue}`,
  );
  // A Proxmox VE node reports its containers now and then on an interval (docs/proxmox.md).
  const reportContainers = async () => {
    if (!node) return;
    try {
      const containers = await node.inventory();
      await api.reportContainers(agent.id, containers);
      log.info(`Proxmox VE ${node.version}: reported ${containers.length} containers`);
    } catch (err) {
      log.error(`container inventory failed: ${errorText(err)}`);
    }
  };
  let inventoryRunning: Promise<void> = reportContainers();
  const inventory = node
    ? setInterval(() => {
        inventoryRunning = inventoryRunning.then(reportContainers);
      }, env.PATCHNANNY_PVE_INVENTORY_MS)
    : undefined;
  // A revoked agent stops: the gate refuses its polls anyway, and a worker the SDK keeps retrying
  // would sit there looking alive. A running apply still finishes (the Worker's shutdown waits).
  let revoked: AgentRevokedError | null = null;
  const watch = setInterval(() => {
    api.self(agent.id).then(
      () => undefined, // read: the API counts it as the agent's liveness (last seen)
      (err: unknown) => {
        if (!(err instanceof AgentRevokedError) || revoked) return; // an API outage is not a revocation
        revoked = err;
        log.error({ agentId: agent.id }, `${err.message}; stopping`);
        stopping.abort('revoked');
        worker.shutdown();
      },
    );
  }, env.PATCHNANNY_AGENT_CHECK_MS);
  try {
    await worker.run(); // until SIGINT/SIGTERM or revocation
  } finally {
    clearInterval(watch);
    clearInterval(inventory);
  }
  await connection.close();
  await metricsServer?.close();
  if (revoked) process.exit(EXIT_REVOKED);
}

// Done: exit rather than wait for the event loop to drain, which the SDK Runtime's core-log
// forwarding keeps alive when no Worker ever started (a pending agent stopped by SIGTERM).
main().then(
  () => process.exit(0),
  (err: unknown) => {
    log.fatal(errorText(err));
    process.exit(err instanceof AgentRevokedError ? EXIT_REVOKED : 1);
  },
);
