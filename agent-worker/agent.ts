import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Worker, type NativeConnection } from '@temporalio/worker';
import { Registry } from 'prom-client';
import { createAgentActivities } from '../activities/agent';
import { agentTaskQueue, DEFAULT_TIMEOUTS, type Agent } from '../contract';
import { errorText, type Log } from '../runtime/log';
import { connectWorker } from '../runtime/temporal';
import { AgentRevokedError, ApiClient } from './api-client';
import { Identity, identityPath, refuseNamespaceCredentials, trustedScriptKeys, type AgentEnv } from './config';
import { activityObserver } from './metrics';
import { detectFamily, osInfo, parseOsRelease } from './os-release';
import { detectProxmox, type ProxmoxNode } from './proxmox';

const hasCommand = (cmd: string) =>
  (process.env.PATH ?? '/usr/bin:/bin').split(':').some((dir) => dir && existsSync(path.join(dir, cmd)));

/** The host's OS and patch family (os-release, PATCHNANNY_AGENT_FAMILY); throws naming an unsupported OS. */
export function detectOs(env: AgentEnv) {
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

/** The enrolment token from the configuration: the variable, or the file it names (read now, not kept). */
async function enrolmentToken(env: AgentEnv): Promise<string | undefined> {
  if (env.PATCHNANNY_ENROL_TOKEN) return env.PATCHNANNY_ENROL_TOKEN;
  if (!env.PATCHNANNY_ENROL_TOKEN_FILE) return undefined;
  const token = (await readFile(env.PATCHNANNY_ENROL_TOKEN_FILE, 'utf8')).trim();
  if (!token) throw new Error(`PATCHNANNY_ENROL_TOKEN_FILE ${env.PATCHNANNY_ENROL_TOKEN_FILE} is empty`);
  return token;
}

/**
 * Re-use the stored identity when the API still knows it; otherwise register with the enrolment
 * token (used this once: the agent's own token is used from then on). A revoked identity is not
 * replaced: the agent stops (AgentRevokedError), an admin decides whether the host comes back.
 */
async function ensureIdentity(env: AgentEnv, api: ApiClient, log: Log): Promise<{ agent: Agent; token: string }> {
  const file = identityPath(env.PATCHNANNY_AGENT_STATE_DIR);
  if (existsSync(file)) {
    const stored = Identity.parse(JSON.parse(await readFile(file, 'utf8')));
    if (stored.apiUrl === env.PATCHNANNY_API_URL) {
      api.useToken(stored.token);
      const agent = await api.self(stored.agentId);
      if (agent) return { agent, token: stored.token };
    }
  }
  const enrolToken = await enrolmentToken(env);
  if (!enrolToken)
    throw new Error(
      'no valid identity and no enrolment token to register with (PATCHNANNY_ENROL_TOKEN_FILE or PATCHNANNY_ENROL_TOKEN)',
    );
  api.useToken(enrolToken);
  const registered = await api.register({
    hostname: env.PATCHNANNY_AGENT_HOSTNAME ?? os.hostname(),
    os: detectOs(env),
    // Only now, at the first registration; an admin owns the labels from here on.
    ...(Object.keys(env.PATCHNANNY_LABELS).length > 0 ? { labels: env.PATCHNANNY_LABELS } : {}),
  });
  api.useToken(registered.token);
  const identity: Identity = { agentId: registered.agent.id, token: registered.token, apiUrl: env.PATCHNANNY_API_URL };
  await writeFile(file, JSON.stringify(identity, null, 2), { mode: 0o600 });
  await forgetEnrolmentTokenFile(env, log);
  return registered;
}

/**
 * Once the agent has its own identity, the enrolment token's file is of no more use to it and a
 * danger left on disk: a token made for many hosts (maxUses > 1) would let whoever reads the file
 * later enrol hosts of their own. It is removed; a file the agent may not remove (a read-only
 * mount) is left with a warning. A later start re-uses the identity and never reads the file.
 */
async function forgetEnrolmentTokenFile(env: AgentEnv, log: Log): Promise<void> {
  const tokenFile = env.PATCHNANNY_ENROL_TOKEN_FILE;
  if (!tokenFile || env.PATCHNANNY_ENROL_TOKEN) return;
  try {
    await rm(tokenFile);
    log.info(`enrolled: removed the enrolment token file ${tokenFile} (the agent's own token is in its state folder)`);
  } catch (err) {
    log.warn(
      `enrolled, but could not remove the enrolment token file ${tokenFile}: ${errorText(err)}; remove it by hand`,
    );
  }
}

/**
 * A pending agent polls nothing on Temporal: it reads its own record until an admin accepts it
 * (or revokes it: AgentRevokedError). Resolves null when the agent is stopped while it waits.
 */
async function waitForAcceptance(
  env: AgentEnv,
  api: ApiClient,
  agent: Agent,
  log: Log,
  stopping?: AbortSignal,
): Promise<Agent | null> {
  if (agent.status === 'accepted') return agent;
  const flag = agent.flag ? ` (flagged ${agent.flag}: an admin should check this host before accepting it)` : '';
  log.info(
    { agentId: agent.id },
    `agent ${agent.id} is pending: waiting for an admin to accept it (POST /v1/agents/${agent.id}/accept)${flag}`,
  );
  let current: Agent | null = agent;
  while (current?.status !== 'accepted') {
    if (stopping?.aborted) return null;
    await new Promise<void>((resolve) => {
      const stop = () => (clearTimeout(timer), resolve());
      const timer = setTimeout(
        () => (stopping?.removeEventListener('abort', stop), resolve()),
        env.PATCHNANNY_AGENT_ACCEPT_POLL_MS,
      );
      stopping?.addEventListener('abort', stop, { once: true });
    });
    if (stopping?.aborted) return null;
    current = await api.self(agent.id).catch((err: unknown) => {
      if (err instanceof AgentRevokedError) throw err;
      // The API being away for a moment is no reason to stop waiting.
      log.warn(`reading own record failed: ${errorText(err)}`);
      return agent;
    });
    if (current === null) throw new Error(`agent ${agent.id}: the API no longer knows this agent's token`);
  }
  log.info({ agentId: agent.id }, `agent ${agent.id} was accepted`);
  return current;
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

/**
 * Register (or re-use the identity), wait until an admin has accepted the agent, then build the
 * Worker with only the agent activities. Null when stopped while waiting for acceptance.
 */
export async function createAgent(
  env: AgentEnv,
  log: Log,
  metrics: Registry | undefined,
  stopping?: AbortSignal,
): Promise<{
  agent: Agent;
  worker: Worker;
  connection: NativeConnection;
  api: ApiClient;
  node: ProxmoxNode | null;
} | null> {
  refuseNamespaceCredentials(env);
  // Before registering: an agent that could not check its scripts' signatures never polls.
  const trustedKeys = trustedScriptKeys(env, (line) => log.info(line));
  await mkdir(env.PATCHNANNY_AGENT_STATE_DIR, { recursive: true, mode: 0o700 });
  await chmod(env.PATCHNANNY_AGENT_STATE_DIR, 0o700);
  const api = new ApiClient(env.PATCHNANNY_API_URL, '');
  const registered = await ensureIdentity(env, api, log);
  const agent = await waitForAcceptance(env, api, registered.agent, log, stopping);
  if (!agent) return null;
  // On a Proxmox VE node the agent patches the node's LXC containers too (docs/proxmox.md).
  const node = detectProxmox(env);
  // Through the agent gate, with the agent's own token: an agent holds no namespace credential.
  const { connection, namespace } = await connectWorker(env, { agentToken: registered.token });
  const worker = await Worker.create({
    connection,
    namespace,
    taskQueue: agentTaskQueue(agent.id),
    shutdownGraceTime: SHUTDOWN_GRACE_MS,
    interceptors: { activity: [activityObserver(metrics ?? new Registry(), log)] },
    activities: createAgentActivities({
      family: agent.family,
      stateDir: env.PATCHNANNY_AGENT_STATE_DIR,
      shell: env.PATCHNANNY_SCRIPT_SHELL,
      scriptEnv: passedToScripts(env.PATCHNANNY_SCRIPT_ENV),
      fetchScript: (name) => api.script(name),
      postOutput: (runId, chunk) => api.postOutput(runId, chunk),
      fetchHook: (name) => api.hook(name),
      reboot: { bootIdFile: env.PATCHNANNY_BOOT_ID_FILE, shutdownBin: env.PATCHNANNY_SHUTDOWN_BIN },
      trustedScriptKeys: trustedKeys,
      killGraceMs: env.PATCHNANNY_SCRIPT_KILL_GRACE_MS,
      stopping,
      ...(node ? { containers: node.host } : {}),
      log: (line, fields) => log.info(fields ?? {}, line),
    }),
  });
  return { agent, worker, connection, api, node };
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
