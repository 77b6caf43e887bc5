/**
 * The measured system, assembled for one benchmark run: a Temporal dev server (own, with the
 * flags of `npm start`, or an existing one), a fresh PostgreSQL database on the machine's
 * server, and the API + control worker as one real child process (dist/api/main.js).
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { spawnLogged, stopChild, waitForHealth } from '../scripts/dev/processes';
import { createScratchDatabase, type ScratchDatabase } from '../scripts/dev/scratch-db';
import { TemporalEnv } from '../runtime/temporal';
import { startCluster, TEMPORAL_SERVER_VERSION } from '../scripts/dev/temporal-cluster';
import {
  ensureSearchAttributes,
  freePort,
  startDevServer,
  temporalCli,
  TEMPORAL_FLAGS,
  type DevServer,
} from '../scripts/dev/temporal-server';

export const DIST = path.resolve(__dirname, '..');
/** bench/fixtures in the source tree (next to dist/): holds the simulated hosts' apt-update.sh. */
export const FIXTURE_SCRIPTS = path.resolve(DIST, '../bench/fixtures');

export interface Temporal {
  address: string;
  namespace: string;
  own: boolean;
  flags: string[] | null;
  version: string | null;
  pid: number | null;
  stop(): Promise<void>;
}

export async function startTemporal(tmp: string, existing: string | undefined): Promise<Temporal> {
  const namespace = 'default';
  let version: string | null = null;
  try {
    version = execFileSync(temporalCli(), ['--version']).toString().trim();
  } catch {
    /* reported as unknown */
  }
  if (existing) {
    await ensureSearchAttributes(TemporalEnv.parse({ TEMPORAL_ADDRESS: existing, TEMPORAL_NAMESPACE: namespace }));
    return { address: existing, namespace, own: false, flags: null, version, pid: null, stop: async () => {} };
  }
  const server: DevServer = await startDevServer({
    dbFile: path.join(tmp, 'temporal.db'),
    logFile: path.join(tmp, 'temporal.log'),
    uiPort: null,
  });
  return {
    address: server.address,
    namespace,
    own: true,
    flags: TEMPORAL_FLAGS,
    version,
    pid: server.process.pid ?? null,
    stop: () => server.stop(),
  };
}

/** Processes and shards of `--temporal cluster`: the topology test/deploy/cluster.test.ts proves. */
export const BENCH_CLUSTER = { processes: 2, shards: 8 };

/**
 * A two-process Temporal cluster over PostgreSQL (scripts/dev/temporal-cluster.ts), reached
 * through its fail-over proxy as every client of a production cluster reaches a load balancer.
 * Pools of 4 + 2 per service and process: at most 48 PostgreSQL connections.
 */
export async function startClusterTemporal(tmp: string): Promise<Temporal> {
  const cluster = await startCluster({
    ...BENCH_CLUSTER,
    pgUrl: PG_SERVER,
    pool: { max: 4, maxIdle: 4, visMax: 2, visMaxIdle: 2 },
    logDir: path.join(tmp, 'cluster'),
  });
  return {
    address: cluster.address,
    namespace: cluster.namespace,
    own: true,
    flags: [
      `temporal-server ${TEMPORAL_SERVER_VERSION} × ${BENCH_CLUSTER.processes} processes (frontend, history, matching, worker each)`,
      `${BENCH_CLUSTER.shards} history shards`,
      'PostgreSQL persistence + visibility (postgres12), pools 4+2 per service',
      'deploy/temporal/config, clients through a TCP fail-over proxy',
    ],
    version: `temporal-server ${TEMPORAL_SERVER_VERSION}`,
    pid: null,
    stop: () => cluster.stop(),
  };
}

const PG_SERVER = process.env.PATCHNANNY_BENCH_PG ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export type Database = ScratchDatabase;

/** A fresh, empty database (the API migrates it at start); dropped at the end. */
export const createDatabase = (): Promise<Database> => createScratchDatabase(PG_SERVER, 'pn_bench', 2);

export interface ApiProcess {
  url: string;
  adminToken: string;
  controlQueue: string;
  process: ChildProcess;
  pid: number;
  stop(): Promise<void>;
}

export async function startApi(opts: {
  temporal: Temporal;
  databaseUrl: string;
  logFile: string;
}): Promise<ApiProcess> {
  const port = await freePort();
  const adminToken = `bench-${randomBytes(18).toString('base64url')}`;
  const controlQueue = `patch-control-bench-${randomBytes(4).toString('hex')}`;
  const child = spawnLogged(process.execPath, [path.join(DIST, 'api/main.js')], opts.logFile, {
    env: {
      ...process.env,
      DATABASE_URL: opts.databaseUrl,
      TEMPORAL_ADDRESS: opts.temporal.address,
      TEMPORAL_NAMESPACE: opts.temporal.namespace,
      PORT: String(port),
      HOST: '127.0.0.1',
      PATCHNANNY_ADMIN_TOKENS: `bench:${adminToken}`,
      PATCHNANNY_SCRIPTS_DIR: FIXTURE_SCRIPTS,
      PATCHNANNY_CONTROL_QUEUE: controlQueue,
    },
  });
  const url = `http://127.0.0.1:${port}`;
  await waitForHealth(url, child, `; see ${opts.logFile}`);
  return {
    url,
    adminToken,
    controlQueue,
    process: child,
    pid: child.pid!,
    stop: () => stopChild(child),
  };
}

export interface GateProcess {
  address: string;
  healthUrl: string;
  pid: number;
  stop(): Promise<void>;
}

/** The agent gate as the real process (dist/gate/main.js) in front of the bench's Temporal. */
export async function startGate(opts: {
  temporal: Temporal;
  databaseUrl: string;
  logFile: string;
}): Promise<GateProcess> {
  const [port, healthPort] = [await freePort(), await freePort()];
  const child = spawnLogged(process.execPath, [path.join(DIST, 'gate/main.js')], opts.logFile, {
    env: {
      ...process.env,
      DATABASE_URL: opts.databaseUrl,
      TEMPORAL_ADDRESS: opts.temporal.address,
      TEMPORAL_NAMESPACE: opts.temporal.namespace,
      PATCHNANNY_GATE_KEY: randomBytes(32).toString('base64url'),
      PATCHNANNY_GATE_LISTEN: `127.0.0.1:${port}`,
      PATCHNANNY_GATE_HEALTH_LISTEN: `127.0.0.1:${healthPort}`,
    },
  });
  const healthUrl = `http://127.0.0.1:${healthPort}`;
  await waitForHealth(healthUrl, child, `; see ${opts.logFile}`, 60_000, 'the agent gate');
  return {
    address: `127.0.0.1:${port}`,
    healthUrl: `${healthUrl}/healthz`,
    pid: child.pid!,
    stop: () => stopChild(child),
  };
}
