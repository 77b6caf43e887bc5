/**
 * Starts the Temporal CLI dev server the way every part of the project uses it (npm start, the
 * tests, the benchmark), with the flags measured on this machine kind (docs/temporal.md).
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { freePort } from '../../runtime/listen';
import { connectClient, TemporalEnv } from '../../runtime/temporal';
import { SEARCH_ATTRIBUTES } from '../../workflows/search-attributes';
import { spawnLogged, stopChild } from './processes';

export const REPO_ROOT = path.resolve(__dirname, '../../..');

/** Server flags, printed by the benchmark next to its figures. */
export const TEMPORAL_FLAGS = [
  '--sqlite-pragma',
  'journal_mode=wal',
  '--sqlite-pragma',
  'synchronous=normal',
  // The dev server's single history shard reads its task queues at most 20×/s by default, which
  // adds ~45 ms to every task dispatch; durability is unchanged.
  '--dynamic-config-value',
  'history.transferProcessorMaxPollRPS=1000',
  '--dynamic-config-value',
  'history.timerProcessorMaxPollRPS=1000',
  '--dynamic-config-value',
  'history.visibilityProcessorMaxPollRPS=1000',
  // One partition per task queue: an agent polls its queue with one long poll, and with the
  // default 4 partitions a task written to a partition nobody polls waits until the poll
  // expires (~1 min; measured as a 1 % tail of 60–70 s runs over 1,000 hosts).
  '--dynamic-config-value',
  'matching.numTaskqueueReadPartitions=1',
  '--dynamic-config-value',
  'matching.numTaskqueueWritePartitions=1',
  ...SEARCH_ATTRIBUTES.flatMap((k) => ['--search-attribute', `${k.name}=Keyword`]),
];

/** Path of the Temporal CLI, installed into the cache when missing. */
export function temporalCli(): string {
  return execFileSync('bash', [path.join(REPO_ROOT, 'scripts/dev/install-temporal.sh')], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
    .toString()
    .trim();
}

/** (Moved to runtime/listen.ts; kept here for the dev tools and tests that import it from here.) */
export { freePort };

export interface DevServer {
  address: string;
  uiUrl: string | null;
  process: ChildProcess;
  stop(): Promise<void>;
}

export async function startDevServer(opts: {
  port?: number;
  uiPort?: number | null;
  dbFile: string;
  logFile: string;
}): Promise<DevServer> {
  const cli = temporalCli();
  const port = opts.port ?? (await freePort());
  mkdirSync(path.dirname(opts.dbFile), { recursive: true });
  mkdirSync(path.dirname(opts.logFile), { recursive: true });
  const args = [
    'server',
    'start-dev',
    '--ip',
    '127.0.0.1',
    '--port',
    String(port),
    '--db-filename',
    opts.dbFile,
    '--log-level',
    'warn',
    ...TEMPORAL_FLAGS,
  ];
  if (opts.uiPort === null || opts.uiPort === undefined) args.push('--headless');
  else args.push('--ui-port', String(opts.uiPort));
  const child = spawnLogged(cli, args, opts.logFile);
  const address = `127.0.0.1:${port}`;
  // Set by the exit listener; an object, so the loop below re-reads it after each await.
  const state: { exited: number | null } = { exited: null };
  child.once('exit', (code) => (state.exited = code ?? -1));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (state.exited !== null) throw new Error(`temporal dev server exited ${state.exited}; see ${opts.logFile}`);
    try {
      const client = await connectClient(TemporalEnv.parse({ TEMPORAL_ADDRESS: address }), { connectTimeoutMs: 1000 });
      await client.workflowService.getSystemInfo({});
      await client.connection.close();
      break;
    } catch (err) {
      if (Date.now() > deadline) {
        await stopChild(child); // a server that never answered is not left behind
        throw new Error(`temporal dev server not ready after 60 s: ${(err as Error).message}`, { cause: err });
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  return {
    address,
    uiUrl: opts.uiPort ? `http://127.0.0.1:${opts.uiPort}` : null,
    process: child,
    stop: () => stopChild(child),
  };
}

/** Against an existing server (TEMPORAL_ADDRESS, with its TLS or API key): register the search attributes when missing. */
export async function ensureSearchAttributes(env: TemporalEnv): Promise<void> {
  const { connection: conn } = await connectClient(env);
  const namespace = env.TEMPORAL_NAMESPACE;
  try {
    const { customAttributes } = await conn.operatorService.listSearchAttributes({ namespace });
    const missing = SEARCH_ATTRIBUTES.filter((k) => !customAttributes || !(k.name in customAttributes));
    if (missing.length > 0) {
      await conn.operatorService.addSearchAttributes({
        namespace,
        searchAttributes: Object.fromEntries(missing.map((k) => [k.name, 2 /* INDEXED_VALUE_TYPE_KEYWORD */])),
      });
    }
  } finally {
    await conn.close();
  }
}
