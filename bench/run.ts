/**
 * `npm run bench`: patchnanny measured next to bare Temporal on the same server, one host to a
 * simulated fleet (issue 5; docs/benchmark.md). Asserts nothing about timings.
 *
 *   node dist/bench/run.js [--smoke] [--only 1,2,…,7] [--fleet N] [--seq N] [--approvals N]
 *                          [--agent-procs N] [--connections N] [--read-seconds N] [--idle-seconds N]
 *                          [--gate-polls N] [--rollout-concurrency N]
 *                          [--temporal-address HOST:PORT] [--temporal dev|cluster] [--results-dir DIR]
 *
 * Without --temporal-address it starts its own dev server with the flags of `npm start`
 * (TEMPORAL_ADDRESS in the environment is ignored on purpose: figures need known flags).
 * `--temporal cluster` runs the fleet scenario on that dev server and then on a two-process
 * Temporal cluster over PostgreSQL (scripts/dev/temporal-cluster.ts), and prints both.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connectClient, TemporalEnv } from '../runtime/temporal';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { agentHost, simLauncher, type BenchContext, type RegisteredAgent, type Sizes } from './context';
import { forkModule, type ChildMessage, type Forked } from './ipc';
import { approvals, gateCost, idleAgent, latency, reads, rolloutScenario, throughput } from './scenarios';
import {
  createDatabase,
  DIST,
  startApi,
  startClusterTemporal,
  startTemporal,
  type ApiProcess,
  type Database,
  type Temporal,
} from './stack';
import { httpClient, pool, ratio, sleep } from './util';

const DEFAULTS: Sizes = {
  seq: 50,
  warmup: 5,
  fleet: 1000,
  // 1,000 waiting runs would double the benchmark's length; 200 shows the same per-run costs.
  approvals: 200,
  startConcurrency: 32,
  agentProcs: 2,
  connections: 10,
  readSeconds: 5,
  idleSeconds: 60,
  statsSettleMs: 11_000,
  gatePolls: 1000,
  rolloutConcurrency: 100,
  batchTimeoutMs: 900_000,
};
const SMOKE: Sizes = {
  ...DEFAULTS,
  seq: 3,
  warmup: 1,
  fleet: 4,
  approvals: 3,
  agentProcs: 1,
  readSeconds: 1,
  idleSeconds: 3,
  rolloutConcurrency: 2,
  statsSettleMs: 1500,
  gatePolls: 5,
  batchTimeoutMs: 60_000,
};

interface Flags {
  smoke: boolean;
  /** Scenario numbers to run (all by default). */
  only: Set<number>;
  sizes: Sizes;
  temporalAddress?: string;
  /** `cluster`: scenario 2 on the dev server, then on the cluster. */
  temporal: 'dev' | 'cluster';
  resultsDir: string;
}

function parseFlags(argv: string[]): Flags {
  const smoke = argv.includes('--smoke');
  const sizes: Sizes = { ...(smoke ? SMOKE : DEFAULTS) };
  const numeric: Record<string, keyof Sizes> = {
    '--fleet': 'fleet',
    '--seq': 'seq',
    '--approvals': 'approvals',
    '--agent-procs': 'agentProcs',
    '--connections': 'connections',
    '--read-seconds': 'readSeconds',
    '--idle-seconds': 'idleSeconds',
    '--gate-polls': 'gatePolls',
    '--rollout-concurrency': 'rolloutConcurrency',
  };
  let temporalAddress: string | undefined;
  let resultsDir = path.resolve(DIST, '../bench/results');
  let approvalsGiven = false;
  let only = new Set([1, 2, 3, 4, 5, 6, 7]);
  let temporal: Flags['temporal'] = 'dev';
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === '--smoke') continue;
    const value = argv[++i];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === '--temporal-address') temporalAddress = value;
    else if (flag === '--temporal') {
      if (value !== 'dev' && value !== 'cluster') throw new Error(`--temporal is dev or cluster, got ${value}`);
      temporal = value;
    } else if (flag === '--results-dir') resultsDir = path.resolve(value);
    else if (flag === '--only')
      only = new Set(
        value
          .split(',')
          .map(Number)
          .filter((n) => n >= 1 && n <= 7),
      );
    else if (numeric[flag]) {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} must be a positive integer, got ${value}`);
      sizes[numeric[flag]] = n;
      if (flag === '--approvals') approvalsGiven = true;
    } else
      throw new Error(
        `unknown flag ${flag} (known: --smoke --only 1,2,… --temporal-address --temporal --results-dir ${Object.keys(numeric).join(' ')})`,
      );
  }
  if (temporal === 'cluster') {
    if (temporalAddress) throw new Error('--temporal cluster starts its own servers: drop --temporal-address');
    only = new Set([2]); // the fleet scenario, on both servers
  }
  if (!approvalsGiven) sizes.approvals = Math.min(sizes.approvals, sizes.fleet);
  if (sizes.approvals > sizes.fleet)
    throw new Error('--approvals cannot exceed --fleet (the waiting runs use the fleet’s agents)');
  return { smoke, only, sizes, temporalAddress, temporal, resultsDir };
}

const log = (msg: string) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}`);

async function registerFleet(
  http: ReturnType<typeof httpClient>,
  tag: string,
  count: number,
): Promise<RegisteredAgent[]> {
  return pool(
    Array.from({ length: count }, (_, i) => i),
    16,
    async (i) => {
      const hostname = i === 0 ? `bench-seq-${tag}` : `bench-${tag}-${String(i).padStart(4, '0')}`;
      const r = await http('POST', '/v1/agents', {
        hostname,
        os: { id: 'debian', versionId: '12', prettyName: 'Debian 12 (simulated)', family: 'apt' },
      });
      if (r.status !== 201) throw new Error(`registering ${hostname}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
      return { id: r.body.agent.id as string, token: r.body.token as string };
    },
  );
}

function machine(temporal: Temporal) {
  const sdk = JSON.parse(readFileSync(require.resolve('@temporalio/worker/package.json'), 'utf8')).version as string;
  return {
    cores: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGb: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    temporalCli: temporal.version,
    temporalSdk: sdk,
    temporalServer: temporal.own
      ? 'own dev server (started by the benchmark)'
      : `existing server at ${temporal.address}`,
    serverFlags: temporal.flags,
  };
}

// ---------- the table ----------

type Row = [scenario: string, metric: string, ours: string, base: string, ratio: string];

const fmt = (v: number | null | undefined, digits = 1) => (v === null || v === undefined ? '–' : v.toFixed(digits));
const fmtRatio = (r: number | null) => (r === null ? '–' : `${r.toFixed(2)}×`);

function tableRows(s: Record<string, any>): Row[] {
  const rows: Row[] = [];
  const add = (
    scenario: string,
    metric: string,
    ours: number | null,
    base: number | null,
    digits = 1,
    withRatio = true,
  ) =>
    rows.push([scenario, metric, fmt(ours, digits), fmt(base, digits), withRatio ? fmtRatio(ratio(ours, base)) : '']);
  const l = s.latency;
  if (l) {
    const name = `1 latency (${l.patchnanny.n} seq)`;
    add(name, 'p50 ms', l.patchnanny.p50, l.baseline.p50);
    add('', 'p90 ms', l.patchnanny.p90, l.baseline.p90);
    add('', 'max ms', l.patchnanny.max, l.baseline.max);
    add('', 'failed runs', l.patchnanny.failed, l.baseline.failed, 0, false);
    const h = (x: any) => (x ? `${x.events} / ${x.workflowTasks} / ${x.activities}` : '–');
    rows.push(['', 'history events / WFTs / activities', h(l.patchnanny.history), h(l.baseline.history), '']);
    rows.push([
      '',
      'history payload bytes',
      String(l.patchnanny.history?.payloadBytes ?? '–'),
      String(l.baseline.history?.payloadBytes ?? '–'),
      fmtRatio(ratio(l.patchnanny.history?.payloadBytes ?? null, l.baseline.history?.payloadBytes ?? null)),
    ]);
  }
  const t = s.throughput;
  if (t) {
    add(`2 throughput (N=${t.patchnanny.runs})`, 'runs/s', t.patchnanny.runsPerSec, t.baseline.runsPerSec, 2);
    add('', 'all terminal after s', t.patchnanny.elapsedMs / 1000, t.baseline.elapsedMs / 1000);
    add('', '50 % terminal after s', t.patchnanny.terminalAfterS.p50, t.baseline.terminalAfterS.p50);
    add('', '90 % terminal after s', t.patchnanny.terminalAfterS.p90, t.baseline.terminalAfterS.p90);
    add('', 'failed runs', t.patchnanny.failed, t.baseline.failed, 0, false);
    add('', 'peak RSS API+control / bare control MB', t.patchnanny.apiPeakRssMb, t.baseline.controlWorkerMaxRssMb);
    const r = t.patchnanny.rowsPerRun;
    rows.push([
      '',
      'PG rows written per run (ins/upd/del)',
      `${fmt(r.written, 1)} (${fmt(r.inserted, 1)}/${fmt(r.updated, 1)}/${fmt(r.deleted, 1)})`,
      '0',
      '',
    ]);
    add('', 'fleet Workers ready after s', t.patchnanny.fleetStartMs / 1000, t.baseline.fleetStartMs / 1000);
  }
  const a = s.approval;
  if (a) {
    add(
      `3 approval (N=${a.patchnanny.runs})`,
      'first approval → last terminal s',
      a.patchnanny.firstApprovalToLastTerminalMs / 1000,
      a.baseline.firstApprovalToLastTerminalMs / 1000,
    );
    add('', 'approve request p50 ms', a.patchnanny.approveRequest.p50, a.baseline.approveRequest.p50);
    add('', 'approve request p99 ms', a.patchnanny.approveRequest.p99, a.baseline.approveRequest.p99);
    add(
      '',
      'control RSS while all wait MB',
      a.patchnanny.controlRssWhileWaitingMb,
      a.baseline.controlRssWhileWaitingMb,
    );
    add('', 'failed runs', a.patchnanny.failed, a.baseline.failed, 0, false);
  }
  const r = s.reads;
  if (r) {
    for (const [key, label] of [
      ['run', 'GET /v1/runs/:id'],
      ['list', 'GET /v1/runs'],
    ] as const) {
      const x = r[key];
      add(
        key === 'run' ? `4 reads (${s.sizes.connections} conns)` : '',
        `${label} (${x.patchnanny.bodyBytes} B) p50 ms`,
        x.patchnanny.p50,
        x.baseline.p50,
      );
      add('', `${label} p99 ms`, x.patchnanny.p99, x.baseline.p99);
      add('', `${label} req/s`, x.patchnanny.reqPerSec, x.baseline.reqPerSec, 0);
    }
  }
  const i = s.idleAgent;
  if (i) {
    add(`5 idle agent (${fmt(i.seconds, 0)} s)`, 'RSS avg MB', i.patchnanny.rssAvgMb, i.baseline.rssAvgMb);
    add('', 'CPU %', i.patchnanny.cpuPercent, i.baseline.cpuPercent, 2);
  }
  const g = s.gate;
  if (g) {
    add(
      `6 gate (N=${g.patchnanny.runs}; base: direct)`,
      'runs/s, one connection per agent',
      g.patchnanny.runsPerSec,
      g.baseline.runsPerSec,
      2,
    );
    add('', 'all terminal after s', g.patchnanny.elapsedMs / 1000, g.baseline.elapsedMs / 1000);
    add('', 'failed runs', g.patchnanny.failed, g.baseline.failed, 0, false);
    add('', 'fleet Workers ready after s', g.patchnanny.fleetStartMs / 1000, g.baseline.fleetStartMs / 1000);
    add('', 'gate peak RSS MB / CPU s during the batch', g.patchnanny.gatePeakRssMb, g.patchnanny.gateCpuS, 1, false);
    const p = g.polls;
    add('', `gate RSS MB with ${p.openCalls}/${p.agents} open polls / fresh`, p.rssWithPollsMb, p.freshRssMb);
    add('', 'gate RSS MB after the batch, no open polls', p.idleRssMb, null, 1, false);
    add('', 'polls refused (must be 0)', p.refused, null, 0, false);
  }
  return rows;
}

/** `--temporal cluster`: the fleet scenario on the dev server, then on the cluster, and cluster ÷ dev server. */
function clusterRows(dev: Record<string, any>, cluster: Record<string, any>, sizes: Sizes): Row[] {
  const named = (rows: Row[], name: string) =>
    rows.map((r, i) => (i === 0 ? ([`${r[0]} ${name}`, ...r.slice(1)] as Row) : r));
  const speed = (s: Record<string, any>, side: 'patchnanny' | 'baseline') =>
    (s.throughput?.[side]?.runsPerSec as number | undefined) ?? null;
  return [
    ...named(tableRows({ throughput: dev.throughput, sizes }), 'dev server'),
    ...named(tableRows({ throughput: cluster.throughput, sizes }), 'cluster'),
    [
      'cluster ÷ dev server',
      'runs/s',
      fmtRatio(ratio(speed(cluster, 'patchnanny'), speed(dev, 'patchnanny'))),
      fmtRatio(ratio(speed(cluster, 'baseline'), speed(dev, 'baseline'))),
      '',
    ],
  ];
}

function renderTable(rows: Row[]): string {
  const header: Row = ['scenario', 'metric', 'patchnanny', 'baseline', 'ratio'];
  const all = [header, ...rows];
  const widths = header.map((_, c) => Math.max(...all.map((r) => r[c].length)));
  const line = (r: Row) => r.map((cell, c) => (c >= 2 ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

// ---------- main ----------

/**
 * The scenarios of `flags.only` against one Temporal: its own database, API + control worker,
 * bare control worker and registered fleet, all torn down by `cleanups` (run by the caller).
 */
async function measure(
  target: string,
  temporal: Temporal,
  flags: Flags,
  tmp: string,
  tag: string,
  cleanups: (() => Promise<unknown>)[],
): Promise<Record<string, unknown>> {
  const { sizes, only } = flags;
  const database: Database = await createDatabase();
  cleanups.push(() => database.drop());
  const api: ApiProcess = await startApi({
    temporal,
    databaseUrl: database.url,
    logFile: path.join(tmp, `api-${target}.log`),
  });
  cleanups.push(() => api.stop());
  log(`API + control worker pid ${api.pid} at ${api.url}, control queue ${api.controlQueue}`);
  const client = await connectClient(
    TemporalEnv.parse({ TEMPORAL_ADDRESS: temporal.address, TEMPORAL_NAMESPACE: temporal.namespace }),
  );
  cleanups.push(() => client.connection.close());
  const http = httpClient(api.url, api.adminToken);

  const reports = new Map<string, number>();
  const planned = new Map<string, number>();
  const onMessage = (m: ChildMessage) => {
    if (m.type !== 'activity') return;
    (m.name === 'report' ? reports : planned).set(m.workflowId, m.at);
  };
  const bareControlQueue = `bare-control-${tag}`;
  const bareControl: Forked = forkModule(
    path.join(DIST, 'bench/bare-control.js'),
    [temporal.address, temporal.namespace, bareControlQueue],
    path.join(tmp, `bare-control-${target}.log`),
  );
  cleanups.push(() => bareControl.kill());
  bareControl.on(onMessage);
  await bareControl.ready;

  const script = await http('GET', '/v1/scripts/apt-update.sh');
  if (script.status !== 200) throw new Error(`the API serves no apt-update.sh: HTTP ${script.status}`);
  log(`registering ${sizes.fleet + 1} simulated agents`);
  const agents = await registerFleet(http, tag, sizes.fleet + 1);

  const base = {
    sizes,
    tmp,
    tag,
    temporal,
    db: database.db,
    databaseUrl: database.url,
    api,
    http,
    client,
    bareControlQueue,
    bareControlPid: bareControl.child.pid!,
    reports,
    planned,
    scriptName: 'apt-update.sh',
    scriptSha256: script.body.script.sha256 as string,
    seqAgent: agents[0],
    fleet: agents.slice(1),
    log,
  };
  const ctx: BenchContext = { ...base, startSims: simLauncher(base, onMessage) };

  const scenarios: Record<string, unknown> = {};
  const done = (name: string, figures: unknown) => {
    scenarios[name] = figures;
    log(`${target} ${name}: ${JSON.stringify(figures)}`); // kept in the log even if a later scenario fails
  };
  if (only.has(1)) done('latency', await latency(ctx));
  if (only.has(2) || only.has(3)) {
    const fleet = await throughput(ctx);
    cleanups.push(() => Promise.all(fleet.sims.map((f) => f.kill())));
    if (only.has(2)) done('throughput', fleet.result);
    if (only.has(3)) done('approval', await approvals(ctx, fleet.sims));
    else await Promise.all(fleet.sims.map((f) => f.kill()));
  }
  if (only.has(4) || only.has(5)) {
    // The idle window overlaps the read load test to keep the benchmark inside 10 minutes: no
    // task reaches the idle agent's queue, so the load elsewhere gives its process no work.
    const idle = only.has(5) ? idleAgent(ctx) : null;
    if (only.has(4)) {
      if (idle) await sleep(3000); // the idle agent registers through the API before the load starts
      let anyRun = (await database.db('patch_runs').where({ outcome: 'completed' }).first('id'))?.id as
        string | undefined;
      if (!anyRun) {
        // --only 4: make one run to read
        const sims = await ctx.startSims('agent', [agentHost(ctx.seqAgent)], { procs: 1 });
        const r = await http('POST', '/v1/runs', { agentId: ctx.seqAgent.id, mode: 'apply', approval: 'auto' });
        anyRun = r.body.run.id as string;
        await client.workflow.getHandle(anyRun).result();
        await Promise.all(sims.map((f) => f.kill()));
      }
      done('reads', await reads(ctx, anyRun));
    }
    if (idle) done('idleAgent', await idle);
  }
  if (only.has(6)) done('gate', await gateCost(ctx));
  if (only.has(7)) done('rollout', await rolloutScenario(ctx));
  return scenarios;
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const { sizes } = flags;
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'pn-bench-'));
  const tag = randomBytes(3).toString('hex');
  const began = Date.now();
  const cleanups: (() => Promise<unknown>)[] = [];
  let ok = false;
  const interrupted = () => {
    log('interrupted; cleaning up');
    void cleanup().then(() => process.exit(130));
  };
  const cleanup = async () => {
    while (cleanups.length) await cleanups.pop()!().catch((err) => log(`cleanup: ${(err as Error).message}`));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);

  try {
    log(`sizes ${JSON.stringify(sizes)}; logs in ${tmp}`);
    const temporal = await startTemporal(tmp, flags.temporalAddress);
    cleanups.push(() => temporal.stop());
    log(`temporal ${temporal.address} (${temporal.own ? 'own dev server' : 'existing'})`);
    const scenarios = await measure('dev', temporal, flags, tmp, tag, cleanups);
    let cluster: { temporal: Temporal; scenarios: Record<string, unknown> } | null = null;
    if (flags.temporal === 'cluster') {
      await cleanup(); // the dev server's side is done: its processes must not share the CPU with the cluster's
      const clusterTemporal = await startClusterTemporal(tmp);
      cleanups.push(() => clusterTemporal.stop());
      log(`temporal cluster ${clusterTemporal.address}: ${clusterTemporal.flags?.join('; ')}`);
      cluster = {
        temporal: clusterTemporal,
        scenarios: await measure('cluster', clusterTemporal, flags, tmp, tag, cleanups),
      };
    }

    const report = {
      benchmark: 'patchnanny vs bare Temporal (issue 5)',
      finishedAt: new Date().toISOString(),
      durationS: Math.round((Date.now() - began) / 1000),
      smoke: flags.smoke,
      machine: machine(temporal),
      sizes,
      ...scenarios,
      ...(cluster ? { cluster: { server: cluster.temporal.flags, ...cluster.scenarios } } : {}),
    };
    const table = renderTable(
      cluster ? clusterRows(scenarios, cluster.scenarios, sizes) : tableRows({ ...scenarios, sizes }),
    );
    const m = report.machine;
    console.log(
      `\npatchnanny benchmark — ${m.cores} cores (${m.cpuModel}), ${m.memoryGb} GB, Node ${m.node}, ${m.temporalCli ?? 'temporal ?'}, SDK ${m.temporalSdk}`,
    );
    console.log(`server: ${m.temporalServer}${m.serverFlags ? `; flags ${m.serverFlags.join(' ')}` : ''}`);
    if (cluster) console.log(`cluster: ${cluster.temporal.flags?.join('; ')}`);
    console.log(`ratio = patchnanny / baseline; took ${report.durationS} s\n`);
    console.log(table);
    mkdirSync(flags.resultsDir, { recursive: true });
    const file = path.join(
      flags.resultsDir,
      `bench-${report.finishedAt.replace(/[:.]/g, '-')}${flags.smoke ? '-smoke' : ''}.json`,
    );
    writeFileSync(file, JSON.stringify({ ...report, table }, null, 2) + '\n');
    console.log(`\nresults: ${file}`);
    ok = true;
  } finally {
    await cleanup();
    if (ok) rmSync(tmp, { recursive: true, force: true });
    else log(`failed; logs kept in ${tmp}`);
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    process.exit(1);
  },
);
