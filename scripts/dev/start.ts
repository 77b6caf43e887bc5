/**
 * `npm start`: the whole system on this machine, on embedded defaults.
 * - Temporal: the CLI dev server (UI on :8233, SQLite under .data/) unless TEMPORAL_ADDRESS is set,
 *   in which case the project's search attributes are registered there when missing.
 * - Database: DATABASE_URL, or an embedded PGlite served on a Unix socket inside the 0700 data
 *   folder, reachable by its owner only (embedded-postgres.ts; same pg/knex path).
 * - The control plane (API on :8080 + control worker) and a local agent for this host.
 * Every child is supervised (supervise.ts): one that exits is restarted with backoff, the dev
 * server on the same SQLite file and port, so runs resume; Ctrl-C/SIGTERM stops everything.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseAdminTokens } from '../../api/env';
import { EXIT_REVOKED, Identity, identityPath } from '../../agent-worker/config';
import { EnrolmentToken } from '../../contract';
import { joinHostPort, splitHostPort } from '../../runtime/listen';
import { MetricsListenSetting } from '../../runtime/metrics';
import { ensureSigningKey, signScriptsDir } from '../../runtime/script-signing';
import { lineSplitter, renderLogLine } from './log-lines';
import { waitForHealth } from './processes';
import { embeddedPostgres } from './embedded-postgres';
import { Supervisor } from './supervise';
import { TemporalEnv } from '../../runtime/temporal';
import { ensureSearchAttributes, REPO_ROOT, startDevServer } from './temporal-server';

const DATA = path.resolve(process.env.PATCHNANNY_DATA_DIR ?? path.join(REPO_ROOT, '.data'));
const DIST = path.join(REPO_ROOT, 'dist');

/**
 * PATCHNANNY_METRICS_LISTEN given to `npm start` (host:port) is the API's metrics listener; the
 * gate takes the next port and the agent the one after (each process needs its own). Unset: none.
 */
function metricsListeners(base: string | undefined): { api?: string; gate?: string; agent?: string } {
  if (!base) return {};
  const { host, port } = splitHostPort(MetricsListenSetting.parse(base)!);
  return { api: joinHostPort(host, port), gate: joinHostPort(host, port + 1), agent: joinHostPort(host, port + 2) };
}

/** A secret generated once and kept in the data folder, unless the environment provides one. */
function secret(file: string, fromEnv: string | undefined): string {
  if (fromEnv) return fromEnv;
  const p = path.join(DATA, file);
  if (existsSync(p)) return readFileSync(p, 'utf8').trim();
  const value = randomBytes(24).toString('base64url');
  writeFileSync(p, value + '\n', { mode: 0o600 });
  return value;
}

/** The API the agent's stored identity belongs to, if it has a readable one. */
function storedApiUrl(stateDir: string): string | null {
  try {
    return Identity.parse(JSON.parse(readFileSync(identityPath(stateDir), 'utf8'))).apiUrl;
  } catch {
    return null; // none yet (or unreadable: the agent registers anew)
  }
}

/**
 * A single-use, pre-accepted enrolment token for the local agent, valid for 10 minutes, made
 * through the API with an admin token and handed over in a 0600 file (never in the agent's
 * environment). Only while the agent has no identity for this API yet; once it has one the file is
 * removed.
 */
async function localEnrolment(apiUrl: string, adminToken: string, stateDir: string): Promise<Record<string, string>> {
  const file = path.join(DATA, 'local-agent-enrol-token');
  if (storedApiUrl(stateDir) === apiUrl) {
    rmSync(file, { force: true });
    return {};
  }
  const res = await fetch(`${apiUrl}/v1/enrolment-tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ note: 'npm start: the local agent', expiresInSeconds: 600, maxUses: 1, preAccepted: true }),
  });
  const body = (await res.json()) as { token?: unknown; enrolmentToken?: unknown };
  if (res.status !== 201 || typeof body.token !== 'string')
    throw new Error(`could not create the local agent's enrolment token: HTTP ${res.status} ${JSON.stringify(body)}`);
  const { id } = EnrolmentToken.parse(body.enrolmentToken);
  writeFileSync(file, body.token + '\n', { mode: 0o600 });
  console.log(`agent | enrolling with single-use pre-accepted enrolment token ${id}`);
  return { PATCHNANNY_ENROL_TOKEN_FILE: file };
}

/**
 * Scripts for this machine's control plane, and the key(s) its agent trusts. With
 * PATCHNANNY_TRUSTED_SCRIPT_KEYS(_FILE) set, the scripts folder is served as it is (signed by the
 * release key, offline) and the agent trusts those keys. Otherwise a development key is made in
 * the data folder (0600) and a copy of the scripts is signed with it into .data/signed-scripts:
 * the repository's scripts are never signed in place, and this key is no release key.
 */
function scriptSigning(): { scriptsDir: string; agentEnv: Record<string, string | undefined> } {
  const source = path.resolve(process.env.PATCHNANNY_SCRIPTS_DIR ?? path.join(REPO_ROOT, 'scripts/patch'));
  if (process.env.PATCHNANNY_TRUSTED_SCRIPT_KEYS || process.env.PATCHNANNY_TRUSTED_SCRIPT_KEYS_FILE) {
    console.log(`scripts| serving ${source} as signed; the agent trusts the configured key(s)`);
    return { scriptsDir: source, agentEnv: {} };
  }
  const keyFile = path.join(DATA, 'script-signing-key');
  const publicLine = ensureSigningKey(keyFile);
  const out = path.join(DATA, 'signed-scripts');
  rmSync(out, { recursive: true, force: true }); // signed afresh each start: no stale script survives
  const signed = signScriptsDir(source, [readFileSync(keyFile, 'utf8')], out);
  console.log(
    `scripts| ${signed.length} scripts of ${source} signed with the development key ${publicLine.slice(0, 16)} ` +
      `(${keyFile}; not for production, see docs/script-signing.md)`,
  );
  return { scriptsDir: out, agentEnv: { PATCHNANNY_TRUSTED_SCRIPT_KEYS: publicLine } };
}

function child(name: string, script: string, env: NodeJS.ProcessEnv): ChildProcess {
  const p = spawn(process.execPath, [path.join(DIST, script)], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Children log JSON lines (docs/observability.md); shown here for people.
  const show = (out: NodeJS.WriteStream) => lineSplitter((l) => out.write(`${name.padEnd(6)}| ${renderLogLine(l)}\n`));
  p.stdout.on('data', show(process.stdout));
  p.stderr.on('data', show(process.stderr));
  return p;
}

const supervisor = new Supervisor();
let pg: { stop(): Promise<void> } | undefined;
let stopping = false;

/** Stop every child (no more restarts), then the embedded database, then exit. */
async function shutdown(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  await supervisor.stop();
  await pg?.stop().catch(() => undefined);
  process.exit(code);
}

async function main(): Promise<void> {
  mkdirSync(DATA, { recursive: true, mode: 0o700 });
  const adminToken = secret('admin-token', undefined);
  const namespace = process.env.TEMPORAL_NAMESPACE ?? 'default';
  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGTERM', () => void shutdown(0));

  let temporalAddress = process.env.TEMPORAL_ADDRESS;
  let uiUrl: string | null = null;
  if (temporalAddress) {
    await ensureSearchAttributes(TemporalEnv.parse(process.env));
    console.log(`temporal | using ${temporalAddress} (namespace ${namespace})`);
  } else {
    console.log('temporal | starting the dev server (first run installs the CLI, ~3 min)');
    // Restarted on the same port and SQLite file: workflows resume where the history left them.
    const devServer = {
      port: Number(process.env.PATCHNANNY_TEMPORAL_PORT ?? 7233),
      uiPort: Number(process.env.PATCHNANNY_TEMPORAL_UI_PORT ?? 8233),
      dbFile: path.join(DATA, 'temporal.db'),
      logFile: path.join(DATA, 'temporal.log'),
    };
    await supervisor.add('temporal', async () => (await startDevServer(devServer)).process);
    temporalAddress = `127.0.0.1:${devServer.port}`;
    uiUrl = `http://127.0.0.1:${devServer.uiPort}`;
  }

  let databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl) {
    // In this process: PGlite lives and dies with the supervisor, so it needs no restarting.
    if (process.env.PATCHNANNY_PGLITE_PORT) {
      // PGlite's server authenticates nobody: on a TCP port every local user is its superuser.
      throw new Error(
        'PATCHNANNY_PGLITE_PORT is no longer supported: the embedded database is served only on a Unix socket in the ' +
          'data folder. For a database on a TCP port use PostgreSQL with a password and DATABASE_URL.',
      );
    }
    const embedded = await embeddedPostgres(DATA);
    pg = embedded;
    databaseUrl = embedded.url;
    console.log(`db     | embedded PGlite in ${path.join(DATA, 'pglite')} on ${embedded.url}`);
  }

  const signing = scriptSigning();
  const metricsAt = metricsListeners(process.env.PATCHNANNY_METRICS_LISTEN);
  const port = process.env.PORT ?? '8080';
  const apiUrl = `http://127.0.0.1:${port}`;
  const admins = process.env.PATCHNANNY_ADMIN_TOKENS ?? `admin:${adminToken}`;
  const api = await supervisor.add('api', () =>
    child('api', 'api/main.js', {
      DATABASE_URL: databaseUrl,
      TEMPORAL_ADDRESS: temporalAddress,
      PORT: port,
      PATCHNANNY_ADMIN_TOKENS: admins,
      PATCHNANNY_SCRIPTS_DIR: signing.scriptsDir,
      PATCHNANNY_METRICS_LISTEN: metricsAt.api,
    }),
  );
  await waitForHealth(apiUrl, api);

  // The agent gate: agents reach Temporal only through it, with their own tokens; the namespace
  // credential (TEMPORAL_TLS_* / TEMPORAL_API_KEY, passed through from this environment) stays here.
  const gateListen = process.env.PATCHNANNY_GATE_LISTEN ?? '127.0.0.1:7280';
  const gateHealth = process.env.PATCHNANNY_GATE_HEALTH_LISTEN ?? '127.0.0.1:7281';
  const gate = await supervisor.add('gate', () =>
    child('gate', 'gate/main.js', {
      DATABASE_URL: databaseUrl,
      TEMPORAL_ADDRESS: temporalAddress,
      PATCHNANNY_GATE_KEY: secret('gate-key', process.env.PATCHNANNY_GATE_KEY),
      PATCHNANNY_GATE_LISTEN: gateListen,
      PATCHNANNY_GATE_HEALTH_LISTEN: gateHealth,
      PATCHNANNY_METRICS_LISTEN: metricsAt.gate,
    }),
  );
  await waitForHealth(`http://${gateHealth}`, gate, '', 60_000, 'the agent gate');

  if (process.env.PATCHNANNY_LOCAL_AGENT !== '0') {
    const stateDir = process.env.PATCHNANNY_AGENT_STATE_DIR ?? path.join(DATA, 'agent');
    const enrollingAdmin = parseAdminTokens(admins)[0].token;
    await supervisor.add(
      'agent',
      async () =>
        child('agent', 'agent-worker/main.js', {
          TEMPORAL_ADDRESS: gateListen,
          // The agent holds no namespace credential (it refuses to start with one).
          TEMPORAL_API_KEY: undefined,
          TEMPORAL_TLS_CERT: undefined,
          TEMPORAL_TLS_KEY: undefined,
          PATCHNANNY_API_URL: apiUrl,
          PATCHNANNY_AGENT_STATE_DIR: stateDir,
          // No static enrolment token any more: one of its own, only when it has no identity yet.
          PATCHNANNY_ENROL_TOKEN: undefined,
          PATCHNANNY_METRICS_LISTEN: metricsAt.agent,
          ...signing.agentEnv,
          ...(await localEnrolment(apiUrl, enrollingAdmin, stateDir)),
        }),
      { [EXIT_REVOKED]: 'an admin revoked it; remove its state folder to enrol it anew' },
    );
  }

  // Where the admin token really is (PATCHNANNY_DATA_DIR moves it), as a path the reader can paste.
  const tokenPath = path.join(DATA, 'admin-token');
  const relative = path.relative(process.cwd(), tokenPath);
  const tokenFile = relative.startsWith('..') ? tokenPath : relative;
  console.log(`
patchnanny is up
  API          ${apiUrl}   (admin token: ${process.env.PATCHNANNY_ADMIN_TOKENS ? 'from PATCHNANNY_ADMIN_TOKENS' : `${adminToken}, kept in ${tokenFile}`})
  Temporal UI  ${uiUrl ?? `(external server ${temporalAddress})`}
  agent gate   ${gateListen}   (agents connect here with their own token; health http://${gateHealth}/healthz)
${metricsAt.api ? `  metrics      http://${metricsAt.api}/metrics (API + control worker), ${metricsAt.gate} (gate), ${metricsAt.agent} (agent)\n` : ''}  try:         export TOKEN=$(cat ${tokenFile})
               curl -s -H "Authorization: Bearer $TOKEN" ${apiUrl}/v1/agents
A process that exits is restarted with backoff. Ctrl-C stops everything.
`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  void shutdown(1); // nothing started before the failure is left running
});
