/**
 * The production topology, for real, outside containers: two official Temporal server processes
 * (1.29.1, all four services each, one ring) on the machine's PostgreSQL, configured by
 * deploy/temporal/config and set up by deploy/temporal/*.sh exactly as docker-compose.yml does;
 * the API + control worker, the agent gate and two agents as the compose services run them
 * (same commands, same variables, loopback addresses). Clients reach the two frontends through
 * a fail-over proxy, because the SDK takes one address.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RUN_OUTCOMES, type ConfigurableTimeouts } from '../../contract';
import { startCluster, type TemporalCluster } from '../../scripts/dev/temporal-cluster';
import { SEARCH_ATTRIBUTES } from '../../workflows/search-attributes';
import { argvOf, composeConfig } from '../support/compose';
import { ProcessStack } from '../support/process-stack';
import { freePort } from '../../runtime/listen';
import { DIST, type TestAgent } from '../support/stack';

const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security'];
/**
 * A task recorded as started on a server process that dies before the answer reaches its worker
 * is recovered only by its StartToClose or heartbeat timeout. scriptMs 40 s gives scripts a 2 s
 * heartbeat and a 6 s heartbeat timeout; hash-verify's StartToClose is a fixed 2 min
 * (workflows/activities.ts), so a run whose hash-verify was lost takes up to that long.
 */
const DEFAULTS: ConfigurableTimeouts = { approvalMs: 180_000, agentPickupMs: 120_000, scriptMs: 40_000 };
/** Runs started at once before one server process is killed. */
const BATCH = 12;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const timings: Record<string, string> = {};
const time = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
  const t = Date.now();
  try {
    return await f();
  } finally {
    timings[name] = `${((Date.now() - t) / 1000).toFixed(1)} s`;
  }
};

const calls = (agent: TestAgent) => {
  const f = path.join(agent.fixtureDir, 'calls.log');
  return existsSync(f) ? readFileSync(f, 'utf8').trim().split('\n') : [];
};

describe('the production topology: a two-process Temporal cluster on PostgreSQL', () => {
  const logDir = mkdtempSync(path.join(os.tmpdir(), 'pn-cluster-'));
  let cluster: TemporalCluster;
  let stack: ProcessStack;
  let agents: TestAgent[] = [];
  let failed = false;

  before(async () => {
    cluster = await time('cluster up (schemas, 2 processes, namespace)', () =>
      startCluster({ logDir, processes: 2, shards: 8 }),
    );
    for (const [k, v] of Object.entries(cluster.timings)) timings[`  ${k}`] = `${(v / 1000).toFixed(1)} s`;
    stack = await time('API + control worker and gate up', () =>
      new ProcessStack(DEFAULTS, cluster.address, { gateProcess: true, metrics: true }).start(),
    );
    agents = await time('two agents polling', () =>
      Promise.all(
        ['cluster-a', 'cluster-b'].map(async (h) =>
          stack.startAgent(h, PLAN, undefined, { PATCHNANNY_METRICS_LISTEN: `127.0.0.1:${await freePort()}` }),
        ),
      ),
    );
  });

  after(async () => {
    console.log('\ncluster test timings');
    for (const [k, v] of Object.entries(timings)) console.log(`  ${k.padEnd(58)} ${v}`);
    await stack?.stop();
    await cluster?.stop();
    if (failed) console.log(`Temporal server logs kept in ${logDir}`);
    else rmSync(logDir, { recursive: true, force: true });
  });

  const guard = async (f: () => Promise<void> | void) => {
    try {
      await f();
    } catch (err) {
      failed = true;
      throw err;
    }
  };

  it('two processes, each running all four services, form one ring through PostgreSQL, on few connections', () =>
    guard(async () => {
      const members = await stack.waitFor(
        'eight live members (4 services × 2 processes)',
        async () => {
          const m = await cluster.members();
          return m.length === 8 && m;
        },
        60_000,
      );
      // role 1..4 (frontend, history, matching, worker), each on two distinct addresses
      const byRole = new Map<number, Set<string>>();
      for (const m of members) byRole.set(m.role, (byRole.get(m.role) ?? new Set()).add(m.address));
      assert.equal(byRole.size, 4, JSON.stringify(members));
      for (const addresses of byRole.values()) assert.equal(addresses.size, 2, JSON.stringify(members));

      const { customAttributes } = await stack.temporal.connection.operatorService.listSearchAttributes({
        namespace: cluster.namespace,
      });
      for (const k of SEARCH_ATTRIBUTES) assert.ok(customAttributes && k.name in customAttributes, k.name);

      // pools of 3 + 2 per service and process: at most 2 × 4 × 5 = 40, whatever the load
      const connections = await cluster.connections();
      timings['PostgreSQL connections of the cluster (idle, pools 3+2)'] = String(connections);
      assert.ok(connections <= 40, `${connections} connections`);
    }));

  it('the API + control worker, gate and agents run with the commands and variables of the compose services', () =>
    guard(async () => {
      const compose = composeConfig().services;
      const spawned: Record<string, { argv: string[]; env: NodeJS.ProcessEnv }> = {
        api: { argv: ['node', 'dist/api/main.js'], env: stack.apiEnv },
        gate: { argv: ['node', 'dist/gate/main.js'], env: stack.gateEnv },
        'demo-agent': { argv: ['node', 'dist/agent-worker/main.js'], env: agents[0].env },
      };
      for (const [name, { argv, env }] of Object.entries(spawned)) {
        assert.deepEqual(argvOf(compose[name]), argv, `${name}: the compose command`);
        // the script the test runs is the same file, by its path below the app folder
        assert.ok(existsSync(path.join(DIST, '..', argv[1])), argv[1]);
        const missing = Object.keys(compose[name].environment).filter((k) => env[k] === undefined);
        assert.deepEqual(missing, [], `${name}: variables compose sets that the test process lacks`);
        // compose keeps /metrics on its networks; here each process serves it on its own port
        const metrics = await fetch(`http://${env.PATCHNANNY_METRICS_LISTEN}/metrics`);
        assert.equal(metrics.status, 200, `${name}: GET /metrics`);
        assert.match(await metrics.text(), /^# TYPE patchnanny_/m, `${name}: patchnanny's own metrics`);
      }
    }));

  it('drives a patch run end to end: plan, approve, apply, report, visible by search attribute', () =>
    guard(async () => {
      const [a, b] = agents;
      const r = await stack.http('POST', '/v1/runs', { body: { agentId: a.id, mode: 'apply', approval: 'required' } });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      const id: string = r.body.run.id;
      const waiting = await time('one run: start → awaiting approval', () =>
        stack.waitForRun(id, (run) => run.phase === 'awaiting-approval', 60_000),
      );
      assert.deepEqual(
        waiting.plan.map((p: { name: string }) => p.name),
        ['openssl'],
      );
      const approved = await stack.approve(id, waiting.planHash);
      assert.equal(approved.status, 200, JSON.stringify(approved.body));
      const run = await time('one run: approve → completed', () => stack.waitForOutcome(id, 60_000));
      assert.equal(run.outcome, 'completed', run.failureReason);
      assert.deepEqual(calls(a), ['dry-run', 'dry-run', 'apply']);

      const dry = await stack.http('POST', '/v1/runs', { body: { agentId: b.id, mode: 'dry-run', approval: 'auto' } });
      assert.equal((await stack.waitForOutcome(dry.body.run.id, 60_000)).outcome, 'completed');

      // the PostgreSQL visibility store answers the UI's filter
      const found = await stack.waitFor('the run by PatchHost', async () => {
        const ids: string[] = [];
        for await (const wf of stack.temporal.workflow.list({
          query: `PatchHost = "${a.id}" AND PatchOutcome = "completed"`,
        }))
          ids.push(wf.workflowId);
        return ids.includes(id) && ids;
      });
      assert.ok(found.includes(id));
    }));

  it('kill -9 of one server process in the middle of a batch of runs: every run still ends in a named state', () =>
    guard(async () => {
      const started = Date.now();
      const ids: string[] = [];
      for (let i = 0; i < BATCH; i++) {
        const agent = agents[i % agents.length];
        const r = await stack.http('POST', '/v1/runs', {
          body: { agentId: agent.id, mode: i % 3 === 0 ? 'dry-run' : 'apply', approval: 'auto' },
        });
        assert.equal(r.status, 202, JSON.stringify(r.body));
        ids.push(r.body.run.id);
      }
      // the middle: some runs finished, others queued behind their host or running
      await stack.waitFor(
        'a few runs of the batch to end',
        async () => (await stack.database.db('patch_runs').whereIn('id', ids).whereNotNull('outcome')).length >= 2,
        120_000,
      );
      const before = (await stack.database.db('patch_runs').whereIn('id', ids).whereNotNull('outcome')).length;
      const killedAt = Date.now();
      await cluster.kill(0);
      timings[`batch of ${BATCH}: ended before the kill`] = String(before);
      timings['batch: start → kill'] = `${((killedAt - started) / 1000).toFixed(1)} s`;

      const outcomes = await time(`batch: kill → all ${BATCH} runs ended`, () =>
        Promise.all(ids.map((id) => stack.waitForOutcome(id, 240_000))),
      );
      const named = new Set<string>(RUN_OUTCOMES);
      const tally: Record<string, number> = {};
      for (const run of outcomes) {
        assert.ok(named.has(run.outcome), `${run.id}: ${run.outcome}`);
        tally[run.outcome] = (tally[run.outcome] ?? 0) + 1;
        const desc = await stack.temporal.workflow.getHandle(run.id).describe();
        assert.equal(desc.status.name, 'COMPLETED', `${run.id}: the workflow closed normally`);
      }
      timings['batch outcomes'] = JSON.stringify(tally);
      const applies = agents.map((a) => calls(a).filter((c) => c === 'apply').length);
      timings['apply scripts run (agent a, agent b)'] = applies.join(', ');
      // an apply is never retried: at most one apply execution per apply run
      assert.ok(applies[0] + applies[1] <= 1 + ids.filter((_, i) => i % 3 !== 0).length);

      // the survivor alone serves new work
      const r = await stack.http('POST', '/v1/runs', {
        body: { agentId: agents[1].id, mode: 'dry-run', approval: 'auto' },
      });
      const lone = await time('one run on the surviving process alone', () =>
        stack.waitForOutcome(r.body.run.id, 120_000),
      );
      assert.equal(lone.outcome, 'completed', lone.failureReason);

      // and the killed process rejoins the ring
      await time('killed process restarted and serving', () => cluster.restart(0));
      await stack.waitFor('eight live members again', async () => (await cluster.members()).length === 8, 60_000);
      await sleep(0);
    }));
});
