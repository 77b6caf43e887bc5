/**
 * `npm start`: the whole system on this machine, on embedded defaults.
 * - Temporal: the CLI dev server (UI on :8233, SQLite under .data/) unless TEMPORAL_ADDRESS is set,
 *   in which case the project's search attributes are registered there when missing.
 * - Database: DATABASE_URL, or an embedded PGlite served on a local socket (same pg/knex path).
 * - The control plane (API on :8080 + control worker) and a local agent for this host.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stopChild, waitForHealth } from './processes';
import { TemporalEnv } from '../../runtime/temporal';
import { ensureSearchAttributes, REPO_ROOT, startDevServer, type DevServer } from './temporal-server';

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

async function embeddedPostgres(): Promise<{ url: string; stop(): Promise<void> }> {
  // ESM-first packages, loaded lazily so a PostgreSQL deployment never loads WASM.
  const { PGlite } = await import('@electric-sql/pglite');
  const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket');
  const db = await PGlite.create(path.join(DATA, 'pglite'));
  const port = Number(process.env.PATCHNANNY_PGLITE_PORT ?? 54329);
  const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port, maxConnections: 32 });
  await server.start();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop: async () => {
      await server.stop();
      await db.close();
    },
  };
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

async function main(): Promise<void> {
  mkdirSync(DATA, { recursive: true, mode: 0o700 });
  const adminToken = secret('admin-token', undefined);
  const enrolToken = secret('enrol-token', process.env.PATCHNANNY_ENROL_TOKEN);
  const namespace = process.env.TEMPORAL_NAMESPACE ?? 'default';
  const stops: (() => Promise<void>)[] = [];

  let temporalAddress = process.env.TEMPORAL_ADDRESS;
  let server: DevServer | undefined;
  if (temporalAddress) {
    await ensureSearchAttributes(TemporalEnv.parse(process.env));
    console.log(`temporal | using ${temporalAddress} (namespace ${namespace})`);
  } else {
    console.log('temporal | starting the dev server (first run installs the CLI, ~3 min)');
    server = await startDevServer({
      port: Number(process.env.PATCHNANNY_TEMPORAL_PORT ?? 7233),
      uiPort: Number(process.env.PATCHNANNY_TEMPORAL_UI_PORT ?? 8233),
      dbFile: path.join(DATA, 'temporal.db'),
      logFile: path.join(DATA, 'temporal.log'),
    });
    temporalAddress = server.address;
    stops.push(() => server!.stop());
  }

  let databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl) {
    const pg = await embeddedPostgres();
    databaseUrl = pg.url;
    stops.unshift(() => pg.stop());
    console.log(`db     | embedded PGlite in ${path.join(DATA, 'pglite')} on ${pg.url}`);
  }

  const port = process.env.PORT ?? '8080';
  const apiUrl = `http://127.0.0.1:${port}`;
  const admins = process.env.PATCHNANNY_ADMIN_TOKENS ?? `admin:${adminToken}`;
  const api = child('api', 'api/main.js', {
    DATABASE_URL: databaseUrl,
    TEMPORAL_ADDRESS: temporalAddress,
    PORT: port,
    PATCHNANNY_ADMIN_TOKENS: admins,
    PATCHNANNY_ENROL_TOKEN: enrolToken,
  });
  const processes: ChildProcess[] = [api];
  await waitForHealth(apiUrl, api);

  if (process.env.PATCHNANNY_LOCAL_AGENT !== '0') {
    processes.push(
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
  Temporal UI  ${server?.uiUrl ?? `(external server ${temporalAddress})`}
  try:         export TOKEN=$(cat .data/admin-token)
               curl -s -H "Authorization: Bearer $TOKEN" ${apiUrl}/v1/agents
Ctrl-C stops everything.
`);

  let stopping = false;
  const shutdown = async (code: number) => {
    if (stopping) return;
    stopping = true;
    await Promise.all(processes.map((p) => stopChild(p)));
    for (const stop of stops) await stop().catch(() => undefined);
    process.exit(code);
  };
  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGTERM', () => void shutdown(0));
  for (const p of processes) {
    p.once('exit', (code) => {
      if (!stopping) {
        console.error(`a patchnanny process exited (${code}); stopping everything`);
        void shutdown(code ?? 1);
      }
    });
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
