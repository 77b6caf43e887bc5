/**
 * `node dist/agent-worker/main.js --check-config <file>`: validate an agent's configuration file
 * (systemd EnvironmentFile) with the one schema the agent starts with (AgentEnv), plus what can be
 * checked on this host without the network: the files it names, the OS, the script keys and how it
 * will enrol. deploy/agent/install.sh runs it before it installs the file and enables the unit.
 */
import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import { envVariables, parseEnvFile } from '../runtime/env-file';
import { parseEnv } from '../runtime/temporal';
import { detectOs } from './agent';
import { AgentEnv, Identity, identityPath, refuseNamespaceCredentials, trustedScriptKeys } from './config';

/** Names the agent's configuration owns: a misspelt one in the file would be silently ignored. */
const OWNED = /^(PATCHNANNY|TEMPORAL)_/;

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** Group or other may read it: a file that holds or points at a secret must be the owner's only. */
const sharedMode = (file: string) => (statSync(file).mode & 0o077) !== 0;

/** Every problem with the configuration file, or a one-line description of the agent it configures. */
export function checkAgentConfigFile(file: string): { ok: true; summary: string } | { ok: false; problems: string[] } {
  const problems: string[] = [];
  let vars: Record<string, string>;
  try {
    vars = parseEnvFile(readFileSync(file, 'utf8'), file);
  } catch (err) {
    return { ok: false, problems: [message(err)] };
  }
  if (sharedMode(file)) problems.push(`${file} is readable by group or others: chmod 600 it`);
  const known = new Set(envVariables(AgentEnv).map((v) => v.name));
  for (const name of Object.keys(vars))
    if (OWNED.test(name) && !known.has(name)) problems.push(`${name}: not an agent setting (misspelt?)`);

  let env: AgentEnv;
  try {
    env = parseEnv(AgentEnv, vars);
  } catch (err) {
    return { ok: false, problems: [...problems, message(err)] };
  }
  const check = (what: () => void) => {
    try {
      what();
    } catch (err) {
      problems.push(message(err));
    }
  };
  check(() => refuseNamespaceCredentials(env));
  check(() => trustedScriptKeys(env, () => undefined));
  if (env.TEMPORAL_TLS_CA) check(() => accessSync(env.TEMPORAL_TLS_CA!, constants.R_OK));
  check(() => accessSync(env.PATCHNANNY_SCRIPT_SHELL, constants.X_OK));
  check(() => accessSync(env.PATCHNANNY_BOOT_ID_FILE, constants.R_OK));
  let family = '?';
  check(() => (family = detectOs(env).family));

  // How it will enrol: an identity from an earlier start, or a token (a file only root reads).
  let enrols = '';
  const identityFile = identityPath(env.PATCHNANNY_AGENT_STATE_DIR);
  if (existsSync(identityFile)) {
    check(() => {
      const identity = Identity.parse(JSON.parse(readFileSync(identityFile, 'utf8')));
      if (identity.apiUrl === env.PATCHNANNY_API_URL) enrols = `identity ${identity.agentId}`;
    });
  }
  if (!enrols && env.PATCHNANNY_ENROL_TOKEN_FILE) {
    const tokenFile = env.PATCHNANNY_ENROL_TOKEN_FILE;
    check(() => {
      if (!readFileSync(tokenFile, 'utf8').trim()) throw new Error(`PATCHNANNY_ENROL_TOKEN_FILE ${tokenFile} is empty`);
      if (sharedMode(tokenFile)) throw new Error(`PATCHNANNY_ENROL_TOKEN_FILE ${tokenFile}: chmod 600 it`);
      enrols = `enrolment token file ${tokenFile}`;
    });
  } else if (!enrols && env.PATCHNANNY_ENROL_TOKEN) enrols = 'PATCHNANNY_ENROL_TOKEN';
  if (!enrols && !problems.some((p) => p.includes('PATCHNANNY_ENROL_TOKEN_FILE')))
    problems.push('no identity in PATCHNANNY_AGENT_STATE_DIR and no enrolment token: set PATCHNANNY_ENROL_TOKEN_FILE');

  if (problems.length) return { ok: false, problems };
  const host = env.PATCHNANNY_AGENT_HOSTNAME ?? os.hostname();
  return {
    ok: true,
    summary:
      `agent for ${host} (${family}): API ${env.PATCHNANNY_API_URL}, gate ${env.TEMPORAL_ADDRESS}, ` +
      `namespace ${env.TEMPORAL_NAMESPACE}, state ${env.PATCHNANNY_AGENT_STATE_DIR}, enrols with ${enrols}` +
      labelsNote(env.PATCHNANNY_LABELS),
  };
}

/** Labels are sent at the first registration only (an admin owns them after): say which apply. */
function labelsNote(labels: Record<string, string>): string {
  const list = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
  return list.length ? `, labels ${list.join(',')} (first registration only)` : '';
}
