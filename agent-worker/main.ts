/** The host agent: `node dist/agent-worker/main.js [--api-url URL] [--state-dir DIR] …` (or the env names). */
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { parseEnv } from '../runtime/temporal';
import { createAgent } from './agent';
import { AgentRevokedError } from './api-client';
import { AgentEnv, EXIT_REVOKED, flagsToEnv, forgetEnrolmentEnv } from './config';

async function main(): Promise<void> {
  const env = parseEnv(AgentEnv, { ...process.env, ...flagsToEnv(process.argv.slice(2)) });
  // From here on the token lives only in `env` until registration: patch scripts inherit process.env.
  forgetEnrolmentEnv();
  // The SDK logs every worker state change at INFO; PATCHNANNY_LOG_LEVEL=INFO brings that back.
  Runtime.install({ logger: new DefaultLogger(env.PATCHNANNY_LOG_LEVEL) });
  // The Worker shuts down on these signals (the SDK's defaults) and waits for running
  // activities; the agent's own part is to stop running dry-runs at once (applies run on).
  const stopping = new AbortController();
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGQUIT', 'SIGUSR2'] as const)
    process.once(signal, () => stopping.abort(signal));
  const created = await createAgent(env, stopping.signal);
  if (!created) return; // stopped while waiting for acceptance
  const { agent, worker, connection } = created;
  console.log(
    `[agent] ${agent.id} (${agent.os.prettyName || agent.os.id}, ${agent.family}) polling ${agent.taskQueue}`,
  );
  await worker.run(); // until SIGINT/SIGTERM
  await connection.close();
}

main().catch((err) => {
  console.error(`[agent] ${err instanceof Error ? err.message : String(err)}`);
  process.exit(err instanceof AgentRevokedError ? EXIT_REVOKED : 1);
});
