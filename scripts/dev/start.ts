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
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { waitForHealth } from './processes';
import { embeddedPostgres } from './embedded-postgres';
import { Supervisor } from './supervise';
import { TemporalEnv } from '../../runtime/temporal';
import { ensureSearchAttributes, REPO_ROOT, startDevServer } from './temporal-server';

const DATA = path.resolve(process.env.PATCHNANNY_DATA_DIR ?? path.join(REPO_ROOT, '.data'));
const DIST = path.join(REPO_ROOT, 'dist');

/** A secret generated once and kept in the data folder, unless the environment provides one. */
function secret(file: string, fromEnv: string | undefined): string {
  if (fromEnv) return fromEnv;
  const p = path.join(DATA, file);
  if (existsSync(p)) return readFileSync(p, 'utf8').trim();
  const value = randomBytes(24).toString('base64url');
  writeFileSync(p, value + '\n', { mode: 0o600 });
  return value;
}

function child(name: string, script: string, env: NodeJS.ProcessEnv): ChildProcess {
  const p = spawn(process.execPath, [path.join(DIST, script)], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const prefix = (chunk: Buffer) =>
    chunk
      .toString()
      .split('\n')
      .filter(Boolean)
      .map((l) => `${name.padEnd(6)}| ${l}`)
      .join('\n') + '\n';
  p.stdout.on('data', (d: Buffer) => process.stdout.write(prefix(d)));
  p.stderr.on('data', (d: Buffer) => process.stderr.write(prefix(d)));
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
  const enrolToken = secret('enrol-token', process.env.PATCHNANNY_ENROL_TOKEN);
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

  const port = process.env.PORT ?? '8080';
  const apiUrl = `http://127.0.0.1:${port}`;
  const admins = process.env.PATCHNANNY_ADMIN_TOKENS ?? `admin:${adminToken}`;
  const api = await supervisor.add('api', () =>
    child('api', 'api/main.js', {
      DATABASE_URL: databaseUrl,
      TEMPORAL_ADDRESS: temporalAddress,
      PORT: port,
      PATCHNANNY_ADMIN_TOKENS: admins,
      PATCHNANNY_ENROL_TOKEN: enrolToken,
    }),
  );
  await waitForHealth(apiUrl, api);

  if (process.env.PATCHNANNY_LOCAL_AGENT !== '0') {
    await supervisor.add('agent', () =>
      child('agent', 'agent-worker/main.js', {
        TEMPORAL_ADDRESS: temporalAddress,
        PATCHNANNY_API_URL: apiUrl,
        PATCHNANNY_ENROL_TOKEN: enrolToken,
        PATCHNANNY_AGENT_STATE_DIR: process.env.PATCHNANNY_AGENT_STATE_DIR ?? path.join(DATA, 'agent'),
      }),
    );
  }

  console.log(`
patchnanny is up
  API          ${apiUrl}   (admin token: ${process.env.PATCHNANNY_ADMIN_TOKENS ? 'from PATCHNANNY_ADMIN_TOKENS' : `${adminToken}, kept in .data/admin-token`})
  Temporal UI  ${uiUrl ?? `(external server ${temporalAddress})`}
  try:         export TOKEN=$(cat .data/admin-token)
               curl -s -H "Authorization: Bearer $TOKEN" ${apiUrl}/v1/agents
A process that exits is restarted with backoff. Ctrl-C stops everything.
`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  void shutdown(1); // nothing started before the failure is left running
});
