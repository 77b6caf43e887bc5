/** The five scenarios of issue 5, each measured next to its bare-Temporal (or bare-Koa) baseline. */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import autocannon from 'autocannon';
import type { Knex } from 'knex';
import { bareApprove } from './bare-workflow';
import * as grpc from '@grpc/grpc-js';
import { temporal } from '@temporalio/proto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { signApproval, toBase64Url } from '../contract/approval';
import { agentTaskQueue } from '../contract/run-id';
import { agentHost, killAll, type BenchContext, type SimOpts } from './context';
import { forkModule, type Forked } from './ipc';
import { cpuSeconds, peakRssMb, resetPeak, rssMb, sampleRss } from './proc';
import { DIST, startGate, type GateProcess } from './stack';
import { pool, ratio, round, sleep, summarize, waitUntil, type LatencySummary } from './util';
import { generateSigningKey } from '../runtime/script-signing';

// ---------- shared readings ----------

/** Terminal state of a set of runs, read from the database the control activities write. */
async function runsState(db: Knex, ids: string[]) {
  if (ids.length === 0) return { done: 0, completed: 0, waiting: 0, lastFinishedMs: null as number | null };
  const row = await db('patch_runs')
    .whereIn('id', ids)
    .first(
      db.raw('count(*) filter (where outcome is not null)::int as done'),
      db.raw("count(*) filter (where outcome = 'completed')::int as completed"),
      db.raw("count(*) filter (where phase = 'awaiting-approval')::int as waiting"),
      db.raw('extract(epoch from max(finished_at)) * 1000 as last_ms'),
    );
  return {
    done: row.done as number,
    completed: row.completed as number,
    waiting: row.waiting as number,
    lastFinishedMs: row.last_ms === null ? null : Number(row.last_ms),
  };
}

type TupleStats = Record<string, { ins: number; upd: number; del: number }>;

/** Rows inserted/updated/deleted per table in the bench database (pg_stat_user_tables). */
async function tupleStats(db: Knex): Promise<TupleStats> {
  const rows = await db('pg_stat_user_tables').select('relname', 'n_tup_ins', 'n_tup_upd', 'n_tup_del');
  return Object.fromEntries(
    rows.map((r) => [r.relname, { ins: Number(r.n_tup_ins), upd: Number(r.n_tup_upd), del: Number(r.n_tup_del) }]),
  );
}

/**
 * PostgreSQL backends flush their table statistics when idle, but at most once a second and
 * otherwise after a 10 s idle timeout (PG 15), so the figures are read after the system idled.
 * With `runs`, also wait (bounded by that timeout) until patch_runs shows at least one insert
 * and one update per run since `since`: the smoke run's short settle time alone missed them on
 * a loaded machine, and counted 0 rows written.
 */
async function settledTupleStats(ctx: BenchContext, since?: TupleStats, runs = 0): Promise<TupleStats> {
  await sleep(ctx.sizes.statsSettleMs);
  const deadline = Date.now() + 15_000;
  for (;;) {
    const stats = await tupleStats(ctx.db);
    const now = stats.patch_runs ?? { ins: 0, upd: 0, del: 0 };
    const then = since?.patch_runs ?? { ins: 0, upd: 0, del: 0 };
    if ((now.ins - then.ins >= runs && now.upd - then.upd >= runs) || Date.now() > deadline) return stats;
    await sleep(250);
  }
}

function rowsPerRun(before: TupleStats, after: TupleStats, runs: number) {
  const perTable: Record<string, { ins: number; upd: number; del: number }> = {};
  const total = { ins: 0, upd: 0, del: 0 };
  for (const [table, a] of Object.entries(after)) {
    if (table === 'knex_migrations' || table === 'knex_migrations_lock') continue;
    const b = before[table] ?? { ins: 0, upd: 0, del: 0 };
    const d = { ins: a.ins - b.ins, upd: a.upd - b.upd, del: a.del - b.del };
    if (d.ins + d.upd + d.del === 0) continue;
    perTable[table] = { ins: round(d.ins / runs, 2)!, upd: round(d.upd / runs, 2)!, del: round(d.del / runs, 2)! };
    total.ins += d.ins;
    total.upd += d.upd;
    total.del += d.del;
  }
  return {
    inserted: round(total.ins / runs, 2),
    updated: round(total.upd / runs, 2),
    deleted: round(total.del / runs, 2),
    written: round((total.ins + total.upd + total.del) / runs, 2),
    perTable,
  };
}

/** The shape of one run's workflow history: what the server stored and dispatched for it. */
async function historyShape(client: Client, workflowId: string) {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const events = history.events ?? [];
  let payloadBytes = 0;
  const walk = (v: unknown, key: string) => {
    if (v instanceof Uint8Array) {
      if (key === 'data') payloadBytes += v.length;
      return;
    }
    if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, k);
  };
  walk(events, '');
  return {
    events: events.length,
    workflowTasks: events.filter((e) => e.workflowTaskCompletedEventAttributes).length,
    activities: events.filter((e) => e.activityTaskScheduledEventAttributes).length,
    searchAttributeUpserts: events.filter((e) => e.upsertWorkflowSearchAttributesEventAttributes).length,
    payloadBytes,
  };
}

/** When the last of these baseline runs reported (now, when none did). */
/** Seconds after t0 by which 50/90/99/100 % of the runs were terminal: a tail shows here. */
function terminalSpread(finishedMs: number[], t0: number) {
  const sorted = finishedMs.map((t) => (t - t0) / 1000).sort((a, b) => a - b);
  const at = (q: number) =>
    sorted.length ? round(sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)], 1) : null;
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: at(1) };
}

const lastReport = (ctx: BenchContext, ids: string[]) =>
  ids.length ? Math.max(...ids.map((id) => ctx.reports.get(id)!)) : Date.now();

const startRun = (ctx: BenchContext, agentId: string, approval: 'auto' | 'required') =>
  ctx.http('POST', '/v1/runs', { agentId, mode: 'apply', approval });

// ---------- 1. run overhead (latency) ----------

export async function latency(ctx: BenchContext) {
  const { sizes, client } = ctx;
  const total = sizes.warmup + sizes.seq;

  ctx.log(`1. latency: ${sizes.seq} sequential bare runs (+${sizes.warmup} warm-up)`);
  const hostQueue = `bare.seq-${ctx.tag}`;
  let sims = await ctx.startSims('bare', [{ taskQueue: hostQueue }], { procs: 1 });
  const bare: number[] = [];
  let bareFailed = 0;
  let lastBare = '';
  for (let i = 0; i < total; i++) {
    const workflowId = `bare-run.seq.${ctx.tag}.${i}`;
    const t = performance.now();
    try {
      await client.workflow.execute('bareRun', { taskQueue: ctx.bareControlQueue, workflowId, args: [{ hostQueue }] });
    } catch {
      bareFailed++;
      continue;
    }
    if (i >= sizes.warmup) bare.push(performance.now() - t);
    lastBare = workflowId;
  }
  await killAll(sims);

  ctx.log(`1. latency: ${sizes.seq} sequential patchnanny runs through the API (+${sizes.warmup} warm-up)`);
  sims = await ctx.startSims('agent', [agentHost(ctx.seqAgent)], { procs: 1 });
  const ours: number[] = [];
  const ids: string[] = [];
  let refused = 0;
  for (let i = 0; i < total; i++) {
    const t = performance.now();
    const r = await startRun(ctx, ctx.seqAgent.id, 'auto');
    if (r.status !== 202) {
      refused++;
      continue;
    }
    const id = r.body.run.id as string;
    await client.workflow
      .getHandle(id)
      .result()
      .catch(() => undefined);
    if (i >= sizes.warmup) ours.push(performance.now() - t);
    ids.push(id);
  }
  await killAll(sims);
  const state = await runsState(ctx.db, ids);

  const oursShape = ids.length ? await historyShape(client, ids[ids.length - 1]) : null;
  const bareShape = lastBare ? await historyShape(client, lastBare) : null;
  return {
    patchnanny: { ...summarize(ours), failed: refused + (ids.length - state.completed), history: oursShape },
    baseline: { ...summarize(bare), failed: bareFailed, history: bareShape },
  };
}

// ---------- 2. fleet throughput ----------

export async function throughput(ctx: BenchContext): Promise<{ result: unknown; sims: Forked[] }> {
  const { sizes, client, api } = ctx;
  const n = sizes.fleet;

  ctx.log(`2. throughput: ${n} bare runs over ${n} host queues`);
  const bareHosts = Array.from({ length: n }, (_, i) => ({ taskQueue: `bare.h${i}-${ctx.tag}` }));
  let t = Date.now();
  let sims = await ctx.startSims('bare', bareHosts);
  const bareFleetStartMs = Date.now() - t;
  const bareIds = bareHosts.map((_, i) => `bare-run.fleet.${ctx.tag}.${i}`);
  const bareRss = sampleRss({ bareControl: ctx.bareControlPid });
  let bareRefused = 0;
  const bareT0 = Date.now();
  await pool(bareIds, sizes.startConcurrency, async (workflowId, i) => {
    try {
      await client.workflow.start('bareRun', {
        taskQueue: ctx.bareControlQueue,
        workflowId,
        args: [{ hostQueue: bareHosts[i].taskQueue }],
      });
    } catch {
      bareRefused++;
    }
  });
  await waitUntil(() => bareIds.every((id) => ctx.reports.has(id)), sizes.batchTimeoutMs);
  const bareDone = bareIds.filter((id) => ctx.reports.has(id));
  const bareElapsed = lastReport(ctx, bareDone) - bareT0;
  const bareControlPeak = bareRss.stop().bareControl;
  await killAll(sims);

  ctx.log(`2. throughput: ${n} patchnanny runs through the API over ${n} simulated agents`);
  const before = await settledTupleStats(ctx);
  t = Date.now();
  sims = await ctx.startSims('agent', ctx.fleet.slice(0, n).map(agentHost));
  const fleetStartMs = Date.now() - t;
  const peakReset = resetPeak(api.pid);
  const rss = sampleRss({ api: api.pid, ...(ctx.temporal.pid ? { temporal: ctx.temporal.pid } : {}) });
  const t0 = Date.now();
  const started = await pool(ctx.fleet.slice(0, n), sizes.startConcurrency, async (a) => {
    const r = await startRun(ctx, a.id, 'auto');
    return r.status === 202 ? (r.body.run.id as string) : null;
  });
  const startedInMs = Date.now() - t0;
  const ids = started.filter((x): x is string => x !== null);
  let state = await runsState(ctx.db, ids);
  await waitUntil(async () => (state = await runsState(ctx.db, ids)).done === ids.length, sizes.batchTimeoutMs, 200);
  const elapsed = (state.lastFinishedMs ?? Date.now()) - t0;
  const finished = await ctx
    .db('patch_runs')
    .whereIn('id', ids)
    .select(ctx.db.raw('extract(epoch from finished_at) * 1000 as ms'));
  const maxRss = rss.stop();
  const apiPeak = peakReset ? peakRssMb(api.pid) : maxRss.api;
  const after = await settledTupleStats(ctx, before, ids.length);

  return {
    sims,
    result: {
      patchnanny: {
        runs: n,
        elapsedMs: elapsed,
        runsPerSec: round((state.done / elapsed) * 1000, 2),
        terminalAfterS: terminalSpread(
          finished.map((r: { ms: string }) => Number(r.ms)),
          t0,
        ),
        startRequestsMs: startedInMs,
        failed: n - state.completed,
        apiPeakRssMb: apiPeak,
        apiPeakRssSource: peakReset ? 'VmHWM after reset' : 'VmRSS sampled every 250 ms',
        temporalServerMaxRssMb: maxRss.temporal ?? null,
        rowsPerRun: rowsPerRun(before, after, Math.max(1, ids.length)),
        fleetStartMs,
      },
      baseline: {
        runs: n,
        elapsedMs: bareElapsed,
        runsPerSec: round((bareDone.length / bareElapsed) * 1000, 2),
        terminalAfterS: terminalSpread(
          bareDone.map((id) => ctx.reports.get(id)!),
          bareT0,
        ),
        failed: n - bareDone.length + bareRefused,
        controlWorkerMaxRssMb: bareControlPeak,
        fleetStartMs: bareFleetStartMs,
      },
    },
  };
}

// ---------- 3. approval at scale ----------

export async function approvals(ctx: BenchContext, sims: Forked[]) {
  const { sizes, client, api } = ctx;
  const m = sizes.approvals;
  const agents = ctx.fleet.slice(0, m);

  // Approvals are signed (issue 10): the bench admin's key is registered before the runs start (they pin it).
  const secret = ed25519.utils.randomSecretKey();
  const key = await ctx.http('POST', '/v1/keys', { publicKey: toBase64Url(ed25519.getPublicKey(secret)) });
  if (key.status !== 201) throw new Error(`approver key not registered: ${key.status} ${JSON.stringify(key.body)}`);
  const keyId = key.body.key.id as string;

  ctx.log(`3. approval: ${m} patchnanny runs waiting for approval`);
  const started = await pool(agents, sizes.startConcurrency, async (a) => {
    const r = await startRun(ctx, a.id, 'required');
    return r.status === 202 ? (r.body.run.id as string) : null;
  });
  const ids = started.filter((x): x is string => x !== null);
  let state = await runsState(ctx.db, ids);
  await waitUntil(
    async () => (state = await runsState(ctx.db, ids)).waiting + state.done === ids.length,
    sizes.batchTimeoutMs,
    200,
  );
  await sleep(1000);
  const waitingRss = rssMb(api.pid);

  // The plan hashes, as an admin's tool would read them: through the run list.
  const planHash = new Map<string, string>();
  for (let before: string | null = null, first = true; first || before; first = false) {
    const r = await ctx.http(
      'GET',
      `/v1/runs?phase=awaiting-approval&limit=500${before ? `&before=${encodeURIComponent(before)}` : ''}`,
    );
    for (const run of r.body.runs) planHash.set(run.id, run.planHash);
    before = r.body.next;
  }
  const waiting = ids.filter((id) => planHash.has(id));

  ctx.log(`3. approval: approving ${waiting.length} runs through the API`);
  const approveMs: number[] = [];
  let refused = 0;
  const t0 = Date.now();
  await pool(waiting, sizes.startConcurrency, async (id) => {
    // Signed before the clock starts, as the CLI signs before it sends: the request is what is measured.
    const signed = signApproval(
      { runId: id, planHash: planHash.get(id)!, by: 'bench', at: new Date().toISOString() },
      keyId,
      secret,
    );
    const t = performance.now();
    const r = await ctx.http('POST', `/v1/runs/${id}/approve`, {
      planHash: signed.planHash,
      at: signed.at,
      keyId,
      signature: signed.signature,
    });
    approveMs.push(performance.now() - t);
    if (r.status !== 200) refused++;
  });
  await waitUntil(async () => (state = await runsState(ctx.db, ids)).done === ids.length, sizes.batchTimeoutMs, 200);
  const elapsed = (state.lastFinishedMs ?? Date.now()) - t0;
  await killAll(sims);

  ctx.log(`3. approval: ${m} bare runs waiting for an Update`);
  const bareHosts = Array.from({ length: m }, (_, i) => ({ taskQueue: `bare.a${i}-${ctx.tag}` }));
  const bareSims = await ctx.startSims('bare', bareHosts);
  const bareIds = bareHosts.map((_, i) => `bare-approval.${ctx.tag}.${i}`);
  await pool(bareIds, sizes.startConcurrency, (workflowId, i) =>
    client.workflow.start('bareApprovalRun', {
      taskQueue: ctx.bareControlQueue,
      workflowId,
      args: [{ hostQueue: bareHosts[i].taskQueue }],
    }),
  );
  await waitUntil(() => bareIds.every((id) => ctx.planned.has(id)), sizes.batchTimeoutMs);
  await sleep(1000);
  const bareWaitingRss = rssMb(ctx.bareControlPid);
  const bareApproveMs: number[] = [];
  let bareRefused = 0;
  const bareT0 = Date.now();
  await pool(bareIds, sizes.startConcurrency, async (id) => {
    const t = performance.now();
    // The validator refuses an approval until the dry-run result is in the workflow; retry briefly.
    for (let attempt = 0; ; attempt++) {
      try {
        await client.workflow.getHandle(id).executeUpdate(bareApprove);
        break;
      } catch (err) {
        if (!(err instanceof WorkflowUpdateFailedError) || attempt > 100) {
          bareRefused++;
          break;
        }
        await sleep(50);
      }
    }
    bareApproveMs.push(performance.now() - t);
  });
  await waitUntil(() => bareIds.every((id) => ctx.reports.has(id)), sizes.batchTimeoutMs);
  const bareDone = bareIds.filter((id) => ctx.reports.has(id));
  const bareElapsed = lastReport(ctx, bareDone) - bareT0;
  await killAll(bareSims);

  return {
    patchnanny: {
      runs: m,
      firstApprovalToLastTerminalMs: elapsed,
      approveRequest: summarize(approveMs),
      controlRssWhileWaitingMb: waitingRss,
      failed: m - state.completed + refused,
    },
    baseline: {
      runs: m,
      firstApprovalToLastTerminalMs: bareElapsed,
      approveRequest: summarize(bareApproveMs),
      controlRssWhileWaitingMb: bareWaitingRss,
      failed: m - bareDone.length + bareRefused,
    },
  };
}

// ---------- 4. API reads ----------

interface ReadFigures {
  path: string;
  bodyBytes: number;
  p50: number;
  p99: number;
  reqPerSec: number;
  non2xx: number;
  errors: number;
}

async function load(
  url: string,
  token: string | null,
  ctx: BenchContext,
  label: string,
  bodyBytes: number,
): Promise<ReadFigures> {
  const r = await autocannon({
    url,
    connections: ctx.sizes.connections,
    duration: ctx.sizes.readSeconds,
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  return {
    path: label,
    bodyBytes,
    p50: r.latency.p50,
    p99: r.latency.p99,
    reqPerSec: round(r.requests.average, 0)!,
    non2xx: r.non2xx,
    errors: r.errors,
  };
}

export async function reads(ctx: BenchContext, runId: string) {
  const onePath = `/v1/runs/${runId}`;
  const listPath = '/v1/runs';
  const one = await ctx.http('GET', onePath);
  const list = await ctx.http('GET', listPath);
  if (one.status !== 200 || list.status !== 200)
    throw new Error(`reads: GET ${onePath} → ${one.status}, GET ${listPath} → ${list.status}`);
  const bodiesFile = path.join(ctx.tmp, 'bare-koa-bodies.json');
  writeFileSync(bodiesFile, JSON.stringify({ '/run': one.body, '/runs': list.body }));
  const koa = forkModule(path.join(DIST, 'bench/bare-koa.js'), [bodiesFile], path.join(ctx.tmp, 'bare-koa.log'));
  const bare = `http://127.0.0.1:${(await koa.ready).port}`;
  try {
    ctx.log(`4. reads: autocannon, ${ctx.sizes.connections} connections, ${ctx.sizes.readSeconds} s per endpoint`);
    return {
      run: {
        patchnanny: await load(ctx.api.url + onePath, ctx.api.adminToken, ctx, 'GET /v1/runs/:id', one.bytes),
        baseline: await load(`${bare}/run`, null, ctx, 'bare Koa, same body', one.bytes),
      },
      list: {
        patchnanny: await load(ctx.api.url + listPath, ctx.api.adminToken, ctx, 'GET /v1/runs (50)', list.bytes),
        baseline: await load(`${bare}/runs`, null, ctx, 'bare Koa, same body', list.bytes),
      },
    };
  } finally {
    await koa.kill();
  }
}

// ---------- 5. agent at rest ----------

export async function idleAgent(ctx: BenchContext) {
  ctx.log(
    `5. idle: one agent process (dist/agent-worker/main.js) and one bare Worker process, ${ctx.sizes.idleSeconds} s`,
  );
  const stateDir = mkdtempSync(path.join(ctx.tmp, 'idle-agent-'));
  let out = '';
  const agent = spawn(process.execPath, [path.join(DIST, 'agent-worker/main.js')], {
    env: {
      ...process.env,
      TEMPORAL_ADDRESS: ctx.temporal.address,
      TEMPORAL_NAMESPACE: ctx.temporal.namespace,
      PATCHNANNY_API_URL: ctx.api.url,
      PATCHNANNY_ENROL_TOKEN: ctx.api.adminToken,
      PATCHNANNY_AGENT_STATE_DIR: stateDir,
      PATCHNANNY_AGENT_HOSTNAME: `bench-idle-${ctx.tag}`,
      PATCHNANNY_AGENT_FAMILY: 'apt',
      // An agent starts only with a trusted script key; this one runs no script, any key will do.
      PATCHNANNY_TRUSTED_SCRIPT_KEYS: generateSigningKey().publicLine,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  agent.stdout.on('data', (d: Buffer) => (out += d.toString()));
  agent.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const bareSims = await ctx.startSims('bare', [{ taskQueue: `bare.idle-${ctx.tag}` }], {
    procs: 1,
    options: 'default',
  });
  try {
    const polling = await waitUntil(() => /polling/.test(out) || agent.exitCode !== null, 30_000);
    if (!polling || agent.exitCode !== null) throw new Error(`idle agent did not start:\n${out}`);
    await sleep(2000); // past start-up
    const pids = { agent: agent.pid!, bare: bareSims[0].child.pid! };
    const samples: Record<string, number[]> = { agent: [], bare: [] };
    const cpu0 = { agent: cpuSeconds(pids.agent), bare: cpuSeconds(pids.bare) };
    const t0 = performance.now();
    const seconds = ctx.sizes.idleSeconds;
    for (let s = 0; s < seconds; s++) {
      await sleep(1000);
      for (const k of ['agent', 'bare'] as const) samples[k].push(rssMb(pids[k]) ?? 0);
    }
    const wall = (performance.now() - t0) / 1000;
    const figures = (k: 'agent' | 'bare') => ({
      rssAvgMb: round(samples[k].reduce((a, b) => a + b, 0) / samples[k].length),
      rssMaxMb: Math.max(...samples[k]),
      cpuPercent: round(((cpuSeconds(pids[k]) - cpu0[k]) / wall) * 100, 2),
      cpuSeconds: round(cpuSeconds(pids[k]) - cpu0[k], 2),
    });
    return { seconds: round(wall), patchnanny: figures('agent'), baseline: figures('bare') };
  } finally {
    await killAll(bareSims);
    await new Promise<void>((resolve) => {
      if (agent.exitCode !== null) return resolve();
      agent.once('exit', () => resolve());
      agent.kill('SIGTERM');
      setTimeout(() => agent.exitCode === null && agent.kill('SIGKILL'), 10_000).unref();
    });
  }
}

export type LatencyResult = Awaited<ReturnType<typeof latency>>;
export type { LatencySummary };

// ---------- 6. the agent gate ----------

/** N auto-approved runs over the fleet's simulated agents, connected as `opts` says; runs/s and failures. */
async function fleetBatch(ctx: BenchContext, label: string, opts: SimOpts) {
  const n = ctx.sizes.fleet;
  const hosts = ctx.fleet.slice(0, n).map(agentHost);
  ctx.log(`6. gate: ${n} patchnanny runs, agents ${label}`);
  let t = Date.now();
  const sims = await ctx.startSims('agent', hosts, opts);
  const fleetStartMs = Date.now() - t;
  t = Date.now();
  const started = await pool(ctx.fleet.slice(0, n), ctx.sizes.startConcurrency, async (a) => {
    const r = await startRun(ctx, a.id, 'auto');
    return r.status === 202 ? (r.body.run.id as string) : null;
  });
  const ids = started.filter((x): x is string => x !== null);
  let state = await runsState(ctx.db, ids);
  await waitUntil(
    async () => (state = await runsState(ctx.db, ids)).done === ids.length,
    ctx.sizes.batchTimeoutMs,
    200,
  );
  const elapsed = (state.lastFinishedMs ?? Date.now()) - t;
  await killAll(sims);
  return {
    runs: n,
    elapsedMs: elapsed,
    runsPerSec: round((state.done / elapsed) * 1000, 2),
    failed: n - state.completed,
    fleetStartMs,
  };
}

/**
 * The gate's cost: the fleet scenario with one connection per simulated agent, directly to
 * Temporal and then through the gate process with each agent's own token (`ratio` = gate/direct);
 * then the gate's memory with `gatePolls` agents each holding a long poll open on its own queue
 * (raw grpc-js clients, one connection and one accepted agent token each, as many hosts would).
 */
export async function gateCost(ctx: BenchContext) {
  const gate = await startGate({
    temporal: ctx.temporal,
    databaseUrl: ctx.databaseUrl,
    logFile: path.join(ctx.tmp, 'gate.log'),
  });
  try {
    await sleep(1000);
    const freshRssMb = rssMb(gate.pid); // started, nothing connected yet
    const direct = await fleetBatch(ctx, 'connected directly (one connection each)', { perHost: 'direct' });
    const rss = sampleRss({ gate: gate.pid });
    const cpu0 = cpuSeconds(gate.pid);
    const gated = await fleetBatch(ctx, 'through the gate (own token and connection each)', {
      address: gate.address,
      perHost: 'token',
    });
    const gateCpuS = round(cpuSeconds(gate.pid) - cpu0, 1);
    const gatePeakRssMb = rss.stop().gate;
    const polls = { freshRssMb, ...(await openPolls(ctx, gate)) };
    return {
      patchnanny: { ...gated, gatePeakRssMb, gateCpuS },
      baseline: direct,
      throughputRatio: ratio(gated.runsPerSec, direct.runsPerSec),
      polls,
    };
  } finally {
    await gate.stop();
  }
}

async function openPolls(ctx: BenchContext, gate: GateProcess) {
  const m = ctx.sizes.gatePolls;
  const agents = [...ctx.fleet.slice(0, m)];
  if (agents.length < m) {
    ctx.log(`6. gate: registering ${m - agents.length} more agents for the long polls`);
    const more = await pool(
      Array.from({ length: m - agents.length }, (_, i) => i),
      16,
      async (i) => {
        const r = await ctx.http('POST', '/v1/agents', {
          hostname: `bench-poll-${ctx.tag}-${String(i).padStart(4, '0')}`,
          os: { id: 'debian', versionId: '12', prettyName: 'Debian 12 (simulated)', family: 'apt' },
        });
        if (r.status !== 201) throw new Error(`registering a poller: HTTP ${r.status}`);
        return { id: r.body.agent.id as string, token: r.body.token as string };
      },
    );
    agents.push(...more);
  }
  const health = async () => (await fetch(gate.healthUrl).then((r) => r.json())) as { openCalls: number };
  await sleep(1000);
  const idleRssMb = rssMb(gate.pid); // after the fleet batch, before the polls
  ctx.log(`6. gate: ${m} agents open a long poll each through the gate`);
  let stopped = false;
  const inFlight = new Set<grpc.ClientUnaryCall>();
  let refused = 0;
  const clients = agents.map(
    // A local subchannel pool: each client its own HTTP/2 connection, as separate hosts have.
    () => new grpc.Client(gate.address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }),
  );
  const pollers = agents.map(async (a, i) => {
    const request = Buffer.from(
      temporal.api.workflowservice.v1.PollActivityTaskQueueRequest.encode({
        namespace: ctx.temporal.namespace,
        taskQueue: { name: agentTaskQueue(a.id), kind: temporal.api.enums.v1.TaskQueueKind.TASK_QUEUE_KIND_NORMAL },
        identity: `bench-poller-${i}`,
      }).finish(),
    );
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${a.token}`);
    while (!stopped) {
      const err = await new Promise<grpc.ServiceError | null>((resolve) => {
        const call: grpc.ClientUnaryCall = clients[i].makeUnaryRequest(
          '/temporal.api.workflowservice.v1.WorkflowService/PollActivityTaskQueue',
          (b: Buffer) => b,
          (b: Buffer) => b,
          request,
          md,
          { deadline: Date.now() + 70_000 },
          (e) => {
            inFlight.delete(call);
            resolve(e);
          },
        );
        inFlight.add(call);
      });
      if (err && !stopped && err.code !== grpc.status.DEADLINE_EXCEEDED) {
        refused++;
        await sleep(1000);
      }
    }
  });
  const t0 = Date.now();
  const allOpen = await waitUntil(async () => (await health()).openCalls >= m, 120_000, 250);
  const openAfterMs = Date.now() - t0;
  await sleep(5000); // steady state: every poll parked upstream
  const openCalls = (await health()).openCalls;
  const rssWithPollsMb = rssMb(gate.pid);
  stopped = true;
  for (const call of inFlight) call.cancel();
  await Promise.all(pollers);
  for (const c of clients) c.close();
  return { agents: m, allOpen, openAfterMs, openCalls, refused, idleRssMb, rssWithPollsMb };
}

// ---------- 7. a rollout over the fleet ----------

/**
 * The zero-overhead makespan of the measured host run times on `slots` slots, each host taken in
 * the order the rollout started it and given the slot that frees first: what the rollout's wall
 * time would be if starting a host cost nothing (docs/benchmark.md, "scheduling overhead").
 */
export function idealMakespan(durationsMs: readonly number[], slots: number): number {
  const free = new Array<number>(Math.max(1, Math.min(slots, durationsMs.length))).fill(0);
  for (const d of durationsMs) {
    let i = 0;
    for (let j = 1; j < free.length; j++) if (free[j] < free[i]) i = j;
    free[i] += d;
  }
  return Math.max(0, ...free);
}

/**
 * `sizes.fleet` simulated hosts (1,000 by default) patched by one rollout at maxConcurrency
 * `sizes.rolloutConcurrency` (100), auto-approved: wall time, and the scheduling overhead per host
 * = (wall time − the ideal makespan of the same host run times) / hosts.
 */
export async function rolloutScenario(ctx: BenchContext) {
  const { sizes, client, db, http } = ctx;
  const hosts = ctx.fleet.slice(0, sizes.fleet);
  const maxConcurrency = sizes.rolloutConcurrency;
  ctx.log(`7. rollout: ${hosts.length} simulated hosts at maxConcurrency ${maxConcurrency}`);
  await db('agents')
    .whereIn(
      'id',
      hosts.map((a) => a.id),
    )
    .update({ labels: JSON.stringify({ bench: ctx.tag }) });
  const sims = await ctx.startSims('agent', hosts.map(agentHost));
  try {
    const t0 = Date.now();
    const r = await http('POST', '/v1/rollouts', {
      name: 'bench',
      targets: { selector: `bench=${ctx.tag}` },
      mode: 'apply',
      approval: 'auto',
      maxConcurrency,
      maxFailures: { count: hosts.length },
    });
    if (r.status !== 201) throw new Error(`rollout refused: ${r.status} ${JSON.stringify(r.body)}`);
    const id = r.body.rollout.id as string;
    await Promise.race([
      client.workflow.getHandle(id).result(),
      sleep(sizes.batchTimeoutMs).then(() => {
        throw new Error(`rollout ${id} did not end within ${sizes.batchTimeoutMs} ms`);
      }),
    ]);
    const wallMs = Date.now() - t0;
    const rows: { started: string; finished: string | null; outcome: string | null }[] = await db(
      'rollout_targets as t',
    )
      .join('patch_runs as p', 'p.id', 't.run_id')
      .where('t.rollout_id', id)
      .orderBy('t.started_at')
      .select(
        db.raw('extract(epoch from t.started_at) * 1000 as started'),
        db.raw('extract(epoch from p.finished_at) * 1000 as finished'),
        'p.outcome',
      );
    const durations = rows.map((x) => Number(x.finished) - Number(x.started));
    const ideal = idealMakespan(durations, maxConcurrency);
    const history = await historyShape(client, id);
    return {
      hosts: hosts.length,
      maxConcurrency,
      completed: rows.filter((x) => x.outcome === 'completed').length,
      wallMs,
      idealMakespanMs: Math.round(ideal),
      hostRunMs: summarize(durations),
      schedulingOverheadPerHostMs: round((wallMs - ideal) / Math.max(1, hosts.length), 2),
      historyEvents: history.events,
      historyEventsPerHost: round(history.events / Math.max(1, hosts.length), 2),
      historyPayloadBytes: history.payloadBytes,
    };
  } finally {
    await killAll(sims);
  }
}
