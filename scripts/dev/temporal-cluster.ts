/**
 * The production topology of Temporal on this machine, outside containers: the official server
 * (temporal-server 1.29.1, built with `go install` into the cache by
 * install-temporal-server.sh) on the machine's PostgreSQL, several processes running all four
 * services and joined into one ring, configured by deploy/temporal/config — the folder
 * docker-compose.yml mounts — and set up by the same deploy/temporal/*.sh scripts the compose
 * jobs run. Clients reach it through a fail-over proxy (scripts/dev/tcp-proxy.ts), because the
 * SDK takes one address. Used by test/deploy/cluster.test.ts and `npm run bench -- --temporal cluster`.
 *
 * Each cluster gets a fresh database pair (`pn_temporal_<hex>` and `…_vis`), dropped by stop().
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import knexFactory from 'knex';
import { z } from 'zod';
import { connectClient, TemporalEnv } from '../../runtime/temporal';
import { SEARCH_ATTRIBUTES } from '../../workflows/search-attributes';
import { spawnLogged, stopChild } from './processes';
import { startTcpProxy, type TcpProxy } from './tcp-proxy';
import { REPO_ROOT, temporalCli } from './temporal-server';

const run = promisify(execFile);

export const TEMPORAL_SERVER_VERSION = '1.29.1';
export const CONFIG_DIR = path.join(REPO_ROOT, 'deploy/temporal/config');
const DYNAMIC_CONFIG = path.join(CONFIG_DIR, 'dynamicconfig/patchnanny.yaml');

/**
 * The environment deploy/temporal/config/patchnanny.yaml reads (server processes) and the setup
 * scripts read: one schema for the names compose and this file set.
 */
export const TemporalServerEnv = z.object({
  POSTGRES_SEEDS: z.string().min(1),
  DB_PORT: z.coerce.number().int().min(1).max(65535).default(5432),
  POSTGRES_USER: z.string().min(1),
  POSTGRES_PWD: z.string().default(''),
  DBNAME: z.string().min(1).default('temporal'),
  VISIBILITY_DBNAME: z.string().min(1).default('temporal_visibility'),
  NUM_HISTORY_SHARDS: z.coerce.number().int().min(1).default(512),
  SQL_MAX_CONNS: z.coerce.number().int().min(1).default(8),
  SQL_MAX_IDLE_CONNS: z.coerce.number().int().min(0).default(4),
  SQL_VIS_MAX_CONNS: z.coerce.number().int().min(1).default(3),
  SQL_VIS_MAX_IDLE_CONNS: z.coerce.number().int().min(0).default(2),
  BIND_ON_IP: z.string().optional(),
  TEMPORAL_BROADCAST_ADDRESS: z.string().optional(),
  FRONTEND_GRPC_PORT: z.coerce.number().int().default(7233),
  FRONTEND_HTTP_PORT: z.coerce.number().int().default(7243),
  FRONTEND_MEMBERSHIP_PORT: z.coerce.number().int().default(6933),
  HISTORY_GRPC_PORT: z.coerce.number().int().default(7234),
  HISTORY_MEMBERSHIP_PORT: z.coerce.number().int().default(6934),
  MATCHING_GRPC_PORT: z.coerce.number().int().default(7235),
  MATCHING_MEMBERSHIP_PORT: z.coerce.number().int().default(6935),
  WORKER_GRPC_PORT: z.coerce.number().int().default(7239),
  WORKER_MEMBERSHIP_PORT: z.coerce.number().int().default(6939),
  LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error']).default('warn'),
  PROMETHEUS_ENDPOINT: z.string().optional(),
  DYNAMIC_CONFIG_FILE_PATH: z.string().optional(),
  /** Read by setup-schema.sh and setup-namespace.sh (not by the server). */
  TEMPORAL_SCHEMA_DIR: z.string().optional(),
  TEMPORAL_SQL_TOOL: z.string().optional(),
  TEMPORAL_CLI: z.string().optional(),
  TEMPORAL_ADDRESS: z.string().optional(),
  TEMPORAL_NAMESPACE: z.string().optional(),
  TEMPORAL_NAMESPACE_RETENTION: z.string().optional(),
});
export type TemporalServerEnv = z.infer<typeof TemporalServerEnv>;

/** Where temporal-server, temporal-sql-tool and schema/ are, installed into the cache when missing. */
export async function temporalServerDir(): Promise<string> {
  const { stdout } = await run('bash', [path.join(REPO_ROOT, 'scripts/dev/install-temporal-server.sh')], {
    maxBuffer: 1 << 20,
  });
  return stdout.trim();
}

export interface ClusterNode {
  index: number;
  /** host:port of this process's frontend (gRPC). */
  frontend: string;
  /** http://host:port of this process's frontend HTTP API (what compose's health check asks). */
  http: string;
  process: ChildProcess | null;
  env: Record<string, string>;
}

export interface TemporalCluster {
  /** What clients use: the fail-over proxy in front of every frontend. */
  address: string;
  namespace: string;
  shards: number;
  nodes: ClusterNode[];
  proxy: TcpProxy;
  databases: { temporal: string; visibility: string };
  logDir: string;
  /** Start-up phases in ms: schema, processes, namespace. */
  timings: Record<string, number>;
  /** kill -9 one server process and wait until it is gone. */
  kill(index: number): Promise<void>;
  /** Start a stopped process again with the same ports and configuration. */
  restart(index: number): Promise<void>;
  /** PostgreSQL connections open to the cluster's two databases now. */
  connections(): Promise<number>;
  /** Rows of cluster_membership whose heartbeat is recent: one per service per live process. */
  members(): Promise<{ role: number; address: string }[]>;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  /** Server processes, each running frontend, history, matching and worker. */
  processes?: number;
  shards?: number;
  /** PostgreSQL server URL (a role that may create databases). */
  pgUrl?: string;
  /** Connection pools per service and process (main store, visibility). */
  pool?: { max: number; maxIdle: number; visMax: number; visMaxIdle: number };
  namespace?: string;
  logDir: string;
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
}

const GRPC_SERVING = async (url: string): Promise<boolean> => {
  try {
    return (await fetch(`${url}/api/v1/system-info`)).ok;
  } catch {
    return false;
  }
};

export async function startCluster(opts: ClusterOptions): Promise<TemporalCluster> {
  const serverDir = await temporalServerDir();
  const pgUrl = new URL(opts.pgUrl ?? process.env.PATCHNANNY_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/postgres');
  const name = `pn_temporal_${randomBytes(5).toString('hex')}`;
  const databases = { temporal: name, visibility: `${name}_vis` };
  const shards = opts.shards ?? 8;
  const pool = opts.pool ?? { max: 3, maxIdle: 2, visMax: 2, visMaxIdle: 1 };
  const namespace = opts.namespace ?? 'default';
  mkdirSync(opts.logDir, { recursive: true });
  const timings: Record<string, number> = {};
  const admin = knexFactory({ client: 'pg', connection: pgUrl.toString(), pool: { min: 0, max: 1 } });

  const base: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    // the temporal CLI looks for its config file under HOME
    HOME: process.env.HOME ?? os.tmpdir(),
    POSTGRES_SEEDS: pgUrl.hostname,
    DB_PORT: pgUrl.port || '5432',
    POSTGRES_USER: decodeURIComponent(pgUrl.username) || 'postgres',
    POSTGRES_PWD: decodeURIComponent(pgUrl.password),
    DBNAME: databases.temporal,
    VISIBILITY_DBNAME: databases.visibility,
  };

  const nodes: ClusterNode[] = [];
  let proxy: TcpProxy | undefined;
  const dropDatabases = async () => {
    for (const db of [databases.temporal, databases.visibility])
      await admin.raw(`drop database if exists ${db} with (force)`);
    await admin.destroy();
  };
  const stopNodes = () => Promise.all(nodes.map((n) => (n.process ? stopChild(n.process, 15_000) : Promise.resolve())));

  const spawnNode = (node: ClusterNode) => {
    const child = spawnLogged(
      path.join(serverDir, 'temporal-server'),
      ['--root', REPO_ROOT, '--config', path.relative(REPO_ROOT, CONFIG_DIR), '--env', 'patchnanny', 'start'],
      path.join(opts.logDir, `temporal-${node.index}.log`),
      { env: node.env },
    );
    node.process = child;
    child.once('exit', () => {
      if (node.process === child) node.process = null;
    });
  };

  const waitServing = async (node: ClusterNode, timeoutMs = 120_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!(await GRPC_SERVING(node.http))) {
      if (!node.process)
        throw new Error(`temporal server ${node.index} exited; see ${opts.logDir}/temporal-${node.index}.log`);
      if (Date.now() > deadline)
        throw new Error(`temporal server ${node.index} not serving after ${timeoutMs} ms; see ${opts.logDir}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  };

  try {
    let t = Date.now();
    const setupEnv = TemporalServerEnv.parse({
      ...base,
      TEMPORAL_SQL_TOOL: path.join(serverDir, 'temporal-sql-tool'),
      TEMPORAL_SCHEMA_DIR: path.join(serverDir, 'schema/postgresql/v12'),
    });
    await run('sh', [path.join(REPO_ROOT, 'deploy/temporal/setup-schema.sh')], {
      env: stringEnv(setupEnv, base),
      maxBuffer: 16 << 20,
    });
    timings.schemaMs = Date.now() - t;

    t = Date.now();
    for (let index = 0; index < (opts.processes ?? 2); index++) {
      const ports: number[] = [];
      while (ports.length < 9) {
        const port = await freeMembershipPort();
        if (!ports.includes(port)) ports.push(port);
      }
      const env = TemporalServerEnv.parse({
        ...base,
        NUM_HISTORY_SHARDS: shards,
        SQL_MAX_CONNS: pool.max,
        SQL_MAX_IDLE_CONNS: pool.maxIdle,
        SQL_VIS_MAX_CONNS: pool.visMax,
        SQL_VIS_MAX_IDLE_CONNS: pool.visMaxIdle,
        BIND_ON_IP: '127.0.0.1',
        TEMPORAL_BROADCAST_ADDRESS: '127.0.0.1',
        FRONTEND_GRPC_PORT: ports[0],
        FRONTEND_HTTP_PORT: ports[1],
        FRONTEND_MEMBERSHIP_PORT: ports[2],
        HISTORY_GRPC_PORT: ports[3],
        HISTORY_MEMBERSHIP_PORT: ports[4],
        MATCHING_GRPC_PORT: ports[5],
        MATCHING_MEMBERSHIP_PORT: ports[6],
        WORKER_GRPC_PORT: ports[7],
        WORKER_MEMBERSHIP_PORT: ports[8],
        LOG_LEVEL: opts.logLevel ?? 'warn',
        DYNAMIC_CONFIG_FILE_PATH: DYNAMIC_CONFIG,
      });
      nodes.push({
        index,
        frontend: `127.0.0.1:${ports[0]}`,
        http: `http://127.0.0.1:${ports[1]}`,
        process: null,
        env: stringEnv(env, base),
      });
    }
    // The first process alone: on a fresh database it writes the cluster's metadata record, and
    // two processes doing that at once race — the loser dies with "duplicate key value violates
    // unique constraint cluster_metadata_info_pkey". The others then join the ring it announced
    // in cluster_membership.
    spawnNode(nodes[0]);
    await waitServing(nodes[0]);
    nodes.slice(1).forEach(spawnNode);
    await Promise.all(nodes.slice(1).map((n) => waitServing(n)));
    timings.serversMs = Date.now() - t;

    proxy = await startTcpProxy(nodes.map((n) => ({ host: '127.0.0.1', port: Number(n.frontend.split(':')[1]) })));
    t = Date.now();
    await run('sh', [path.join(REPO_ROOT, 'deploy/temporal/setup-namespace.sh')], {
      env: stringEnv(
        TemporalServerEnv.parse({
          ...base,
          TEMPORAL_CLI: temporalCli(),
          TEMPORAL_ADDRESS: proxy.address,
          TEMPORAL_NAMESPACE: namespace,
          TEMPORAL_NAMESPACE_RETENTION: '1d',
        }),
        base,
      ),
      maxBuffer: 16 << 20,
    });
    // A new namespace reaches each frontend's cache within ~10 s: wait until every one answers
    // for it with the search attributes, so no client is told "namespace not found".
    for (const node of nodes) await waitNamespace(node.frontend, namespace);
    timings.namespaceMs = Date.now() - t;
  } catch (err) {
    await stopNodes();
    await proxy?.close();
    await dropDatabases();
    throw err;
  }

  const cluster: TemporalCluster = {
    address: proxy.address,
    namespace,
    shards,
    nodes,
    proxy,
    databases,
    logDir: opts.logDir,
    timings,
    kill: async (index) => {
      const child = nodes[index].process;
      if (!child) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await gone;
    },
    restart: async (index) => {
      if (nodes[index].process) throw new Error(`temporal server ${index} is running`);
      spawnNode(nodes[index]);
      await waitServing(nodes[index]);
    },
    connections: async () => {
      const r: unknown = await admin.raw('select count(*)::int as n from pg_stat_activity where datname in (?, ?)', [
        databases.temporal,
        databases.visibility,
      ]);
      return z.object({ rows: z.tuple([z.object({ n: z.number() })]) }).parse(r).rows[0].n;
    },
    members: async () => {
      const pg = knexFactory({
        client: 'pg',
        connection: Object.assign(new URL(pgUrl.toString()), { pathname: `/${databases.temporal}` }).toString(),
        pool: { min: 0, max: 1 },
      });
      try {
        const r: unknown = await pg.raw(
          `select role, rpc_address, rpc_port from cluster_membership
            where last_heartbeat > now() at time zone 'utc' - interval '20 seconds' order by role, rpc_port`,
        );
        const { rows } = z
          .object({ rows: z.array(z.object({ role: z.number(), rpc_address: z.string(), rpc_port: z.number() })) })
          .parse(r);
        return rows.map((m) => ({ role: m.role, address: `${m.rpc_address}:${m.rpc_port}` }));
      } finally {
        await pg.destroy();
      }
    },
    stop: async () => {
      await stopNodes();
      await proxy.close();
      await dropDatabases();
    },
  };
  return cluster;
}

/** Wait until the frontend at `address` knows `namespace` and patchnanny's search attributes on it. */
async function waitNamespace(address: string, namespace: string, timeoutMs = 60_000): Promise<void> {
  const client = await connectClient(TemporalEnv.parse({ TEMPORAL_ADDRESS: address, TEMPORAL_NAMESPACE: namespace }));
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      try {
        await client.workflowService.describeNamespace({ namespace });
        const { customAttributes } = await client.connection.operatorService.listSearchAttributes({ namespace });
        if (SEARCH_ATTRIBUTES.every((k) => customAttributes && k.name in customAttributes)) return;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`${address} does not know namespace ${namespace}`, { cause: err });
      }
      if (Date.now() > deadline) throw new Error(`${address}: search attributes missing on ${namespace}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    await client.connection.close();
  }
}

/**
 * A free loopback port below 32768. The PostgreSQL schema stores a member's port in
 * `cluster_membership.rpc_port`, a SMALLINT: a port from the OS's ephemeral range (32768 and up
 * here) makes the server die at start with `value "35823" is out of range for type smallint`.
 * Ports below the ephemeral range are also never taken by an outgoing connection meanwhile.
 */
async function freeMembershipPort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const free = await new Promise<boolean>((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (free) return port;
  }
}

/** A parsed env as the string map spawn takes (unset optionals left out). */
function stringEnv(env: TemporalServerEnv, base: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = { PATH: base.PATH, HOME: base.HOME };
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = String(v);
  return out;
}
