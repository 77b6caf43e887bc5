import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Worker, type NativeConnection } from '@temporalio/worker';
import { createAgentActivities } from '../activities/agent';
import { agentTaskQueue, DEFAULT_TIMEOUTS, type Agent } from '../contract';
import { connectWorker } from '../runtime/temporal';
import { ApiClient } from './api-client';
import { Identity, identityPath, type AgentEnv } from './config';
import { detectFamily, osInfo, parseOsRelease } from './os-release';

const hasCommand = (cmd: string) =>
  (process.env.PATH ?? '/usr/bin:/bin').split(':').some((dir) => dir && existsSync(path.join(dir, cmd)));

function detectOs(env: AgentEnv) {
  const release = parseOsRelease(readFileSync(env.PATCHNANNY_OS_RELEASE, 'utf8'));
  const family = env.PATCHNANNY_AGENT_FAMILY ?? detectFamily(release, hasCommand);
  if (!family)
    throw new Error(
      `unsupported OS ${release.ID ?? '?'} (${release.PRETTY_NAME ?? ''}); set PATCHNANNY_AGENT_FAMILY to override`,
    );
  if (typeof family === 'object')
    throw new Error(`${family.unsupported} (${release.PRETTY_NAME ?? release.ID ?? '?'})`);
  return osInfo(release, family);
}

/** Re-use the stored identity when the API still knows it; otherwise register with the enrolment token. */
async function ensureIdentity(env: AgentEnv, api: ApiClient): Promise<{ agent: Agent; token: string }> {
  const file = identityPath(env.PATCHNANNY_AGENT_STATE_DIR);
  if (existsSync(file)) {
    const stored = Identity.parse(JSON.parse(await readFile(file, 'utf8')));
    if (stored.apiUrl === env.PATCHNANNY_API_URL) {
      api.useToken(stored.token);
      const agent = await api.self(stored.agentId);
      if (agent) return { agent, token: stored.token };
    }
  }
  if (!env.PATCHNANNY_ENROL_TOKEN) throw new Error('no valid identity and no PATCHNANNY_ENROL_TOKEN to register with');
  api.useToken(env.PATCHNANNY_ENROL_TOKEN);
  const registered = await api.register({
    hostname: env.PATCHNANNY_AGENT_HOSTNAME ?? os.hostname(),
    os: detectOs(env),
  });
  api.useToken(registered.token);
  const identity: Identity = { agentId: registered.agent.id, token: registered.token, apiUrl: env.PATCHNANNY_API_URL };
  await writeFile(file, JSON.stringify(identity, null, 2), { mode: 0o600 });
  return registered;
}

/**
 * How long a stopping agent (SIGTERM/SIGINT) lets running activities finish before the SDK
 * cancels them. Generous on purpose: an apply is never interrupted, so the agent's stop waits
 * for it (as long as the default script timeout); dry-runs do not wait for this, they are stopped
 * at once through `stopping` (SIGTERM to the script, SIGKILL 30 s later). A service manager
 * must allow for this too (systemd: TimeoutStopSec, and KillMode=mixed or process so the
 * script's process group is not killed with the agent).
 */
export const SHUTDOWN_GRACE_MS = DEFAULT_TIMEOUTS.scriptMs;

/** Register (or re-use the identity), then build the Worker with only the agent activities. */
export async function createAgent(
  env: AgentEnv,
  stopping?: AbortSignal,
): Promise<{ agent: Agent; worker: Worker; connection: NativeConnection }> {
  await mkdir(env.PATCHNANNY_AGENT_STATE_DIR, { recursive: true, mode: 0o700 });
  await chmod(env.PATCHNANNY_AGENT_STATE_DIR, 0o700);
  const api = new ApiClient(env.PATCHNANNY_API_URL, '');
  const { agent } = await ensureIdentity(env, api);
  const { connection, namespace } = await connectWorker(env);
  const worker = await Worker.create({
    connection,
    namespace,
    taskQueue: agentTaskQueue(agent.id),
    shutdownGraceTime: SHUTDOWN_GRACE_MS,
    activities: createAgentActivities({
      family: agent.family,
      stateDir: env.PATCHNANNY_AGENT_STATE_DIR,
      shell: env.PATCHNANNY_SCRIPT_SHELL,
      scriptEnv: passedToScripts(env.PATCHNANNY_SCRIPT_ENV),
      fetchScript: (name) => api.script(name),
      killGraceMs: env.PATCHNANNY_SCRIPT_KILL_GRACE_MS,
      stopping,
    }),
  });
  return { agent, worker, connection };
}

/** The variables PATCHNANNY_SCRIPT_ENV names, with their values in the agent's environment (unset ones are left out). */
function passedToScripts(names: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of names) {
    const value = process.env[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}
