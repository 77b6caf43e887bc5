import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ConfigurableTimeouts } from '../../contract';
import { restartDelay, Supervisor } from '../../scripts/dev/supervise';
import { freePort } from '../../scripts/dev/temporal-server';
import { PatchOutcome, PatchPhase } from '../../workflows/search-attributes';
import {
  aliveWith,
  descendants,
  exited,
  ownDevServer,
  ProcessStack,
  type OwnDevServer,
} from '../support/process-stack';
import { DIST, FIXTURE_SCRIPTS, type TestAgent } from '../support/stack';

const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security'];
/**
 * scriptMs 40 s gives a 2 s heartbeat and a 6 s heartbeat timeout: a dead agent is noticed in
 * seconds, yet a starved agent on a loaded 2-core machine is not mistaken for a dead one.
 */
const DEFAULTS: ConfigurableTimeouts = { approvalMs: 120_000, agentPickupMs: 60_000, scriptMs: 40_000 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitUntil<T>(
  what: string,
  probe: () => Promise<T | false | undefined> | T | false | undefined,
  ms = 60_000,
) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(200);
  }
}

/** What the agent's fixture script was really asked to do, in order ("dry-run", "apply"). */
const calls = (agent: TestAgent) => {
  const f = path.join(agent.fixtureDir, 'calls.log');
  return existsSync(f) ? readFileSync(f, 'utf8').trim().split('\n') : [];
};
const count = (agent: TestAgent, mode: string) => calls(agent).filter((c) => c === mode).length;

async function startRun(stack: ProcessStack, body: Record<string, unknown>): Promise<string> {
  const r = await stack.http('POST', '/v1/runs', { body });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  return r.body.run.id;
}

/**
 * The run's record and Temporal say the same thing: the workflow completed (never failed as an
 * execution), its PatchOutcome/PatchPhase search attributes match the database row.
 */
async function assertAgreement(stack: ProcessStack, id: string): Promise<string> {
  const handle = stack.temporal.workflow.getHandle(id);
  await handle.result();
  const [row, desc] = await Promise.all([stack.database.db('patch_runs').where({ id }).first(), handle.describe()]);
  assert.equal(desc.status.name, 'COMPLETED');
  assert.ok(row.outcome, 'the row has an outcome');
  assert.equal(row.phase, 'done');
  assert.equal(desc.typedSearchAttributes.get(PatchOutcome), row.outcome);
  assert.equal(desc.typedSearchAttributes.get(PatchPhase), 'done');
  return row.outcome;
}

/** The printed matrix (and docs/faults-processes.md): case, what the test does, outcome. */
const matrix: { case: string; does: string; outcome: string }[] = [];
const record = (c: string, does: string, outcome: string) => matrix.push({ case: c, does, outcome });

after(() => {
  matrix.sort((a, b) => a.case.localeCompare(b.case, 'en', { numeric: true }));
  console.log('\nprocess fault matrix');
  console.log(`| case | what the test does | outcome |\n|---|---|---|`);
  for (const m of matrix) console.log(`| ${m.case} | ${m.does} | ${m.outcome} |`);
});

describe('fault: an agent process dies', { concurrency: true }, () => {
  const stack = new ProcessStack(DEFAULTS);
  before(() => stack.start());
  after(() => stack.stop());

  it('1. an agent killed mid-apply fails the run by its heartbeat and the apply is never retried', async () => {
    const agent = await stack.startAgent('kill-apply', PLAN);
    writeFileSync(path.join(agent.fixtureDir, 'delay-apply'), '30');
    const id = await startRun(stack, { agentId: agent.id, mode: 'apply', approval: 'auto' });
    await waitUntil('the apply to start', () => calls(agent).includes('apply'));
    await stack.killAgent(agent);
    // Back at once: a retried apply would find an agent to run on.
    await stack.restartAgent(agent, 'kill-apply');
    const run = await stack.waitForOutcome(id, 60_000);
    assert.equal(run.outcome, 'failed');
    assert.match(run.failureReason, /scriptExecute: .*heartbeat/i);
    assert.equal(count(agent, 'apply'), 1, 'apply ran once');
    const outcome = await assertAgreement(stack, id);
    record(
      '1',
      'kill -9 the agent while the apply script runs; restart it at once',
      `${outcome} (${run.failureReason}); apply ran once`,
    );
  });

  it('2. an agent killed mid-dry-run and restarted runs the retried dry-run and the run completes', async () => {
    const agent = await stack.startAgent('kill-dry-run', PLAN);
    writeFileSync(path.join(agent.fixtureDir, 'delay-dry-run'), '30');
    const id = await startRun(stack, { agentId: agent.id, mode: 'dry-run', approval: 'auto' });
    await waitUntil('the dry-run to start', () => calls(agent).includes('dry-run'));
    await stack.killAgent(agent);
    unlinkSync(path.join(agent.fixtureDir, 'delay-dry-run'));
    const restarted = await stack.restartAgent(agent, 'kill-dry-run');
    assert.equal(restarted.id, agent.id, 'the same agent identity');
    const run = await stack.waitForOutcome(id, 90_000);
    assert.equal(run.outcome, 'completed', run.failureReason);
    assert.equal(run.plan.length, 1);
    assert.equal(count(agent, 'dry-run'), 2, 'the dry-run ran again on the restarted agent');
    const outcome = await assertAgreement(stack, id);
    record(
      '2',
      'kill -9 the agent while the dry-run script runs; restart it',
      `${outcome}; dry-run retried once on the restarted agent`,
    );
  });

  it('10. an agent offline when a window opens ends agent-unreachable within the window; the other host completes', async () => {
    const online = await stack.startAgent('win-online', PLAN);
    const offline = await stack.startAgent('win-offline', PLAN);
    await stack.killAgent(offline);
    const created = await stack.http('POST', '/v1/windows', {
      body: {
        name: 'offline host window',
        targets: { agentIds: [online.id, offline.id] },
        recurrence: { everySeconds: 3600 },
        startAt: '2030-01-01T00:00:00Z', // only the trigger below fires it
        timezone: 'UTC',
        durationSeconds: 40,
        cutoffSeconds: 20,
        approval: 'auto',
      },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const windowId: string = created.body.window.id;
    assert.equal((await stack.http('POST', `/v1/windows/${windowId}/trigger`)).status, 202);
    const rows = await waitUntil('both window runs', async () => {
      const r = await stack.database.db('patch_runs').where({ window_id: windowId });
      return r.length === 2 && r;
    });
    const runOf = (a: TestAgent) => rows.find((r) => r.agent_id === a.id)!;
    const [good, gone] = await Promise.all([
      stack.waitForOutcome(runOf(online).id, 60_000),
      stack.waitForOutcome(runOf(offline).id, 60_000),
    ]);
    assert.equal(good.outcome, 'completed', good.failureReason);
    assert.equal(gone.outcome, 'agent-unreachable', gone.failureReason);
    const applyBy = Date.parse(gone.windowStart) + 20_000;
    // Pickup is bounded by the cutoff; the outcome is recorded a moment later (slack for load).
    assert.ok(
      Date.parse(gone.finishedAt) <= applyBy + 10_000,
      `${gone.finishedAt} vs cutoff ${new Date(applyBy).toISOString()}`,
    );
    assert.equal(calls(offline).length, 0);
    const [a, b] = [await assertAgreement(stack, good.id), await assertAgreement(stack, gone.id)];
    assert.equal((await stack.http('DELETE', `/v1/windows/${windowId}`)).status, 204);
    record(
      '10',
      'kill -9 one of two agents, then fire a window for both',
      `offline host ${b} by the cutoff; other host ${a}`,
    );
  });
});

describe('fault: the control plane process dies', () => {
  const stack = new ProcessStack(DEFAULTS);
  before(() => stack.start());
  after(() => stack.stop());

  it('3. the control worker killed mid-run and restarted: the run resumes and completes', async () => {
    const agent = await stack.startAgent('kill-control', PLAN);
    writeFileSync(path.join(agent.fixtureDir, 'delay-dry-run'), '3');
    const id = await startRun(stack, { agentId: agent.id, mode: 'apply', approval: 'auto' });
    await waitUntil('the dry-run to start', () => calls(agent).includes('dry-run'));
    assert.equal(await stack.killApi('SIGKILL'), 'SIGKILL');
    // The agent finishes its dry-run while no control worker is alive; Temporal keeps the result.
    const handle = stack.temporal.workflow.getHandle(id);
    await waitUntil('the dry-run result in the history', async () => {
      const { events } = await handle.fetchHistory();
      return (events ?? []).filter((e) => e.activityTaskCompletedEventAttributes).length >= 2; // hashVerify, dry-run
    });
    assert.equal(calls(agent).includes('apply'), false, 'nothing goes on without the control worker');
    await stack.startApi();
    const run = await stack.waitForOutcome(id, 90_000);
    assert.equal(run.outcome, 'completed', run.failureReason);
    assert.deepEqual(calls(agent), ['dry-run', 'apply']);
    const outcome = await assertAgreement(stack, id);
    record(
      '3',
      'kill -9 the API + control worker during the dry-run; restart it after the dry-run finished',
      `${outcome}; dry-run and apply once each`,
    );
  });

  it('5. the API restarted while runs wait for approval: approvals through the new API complete them', async () => {
    const agents = await Promise.all(['approve-a', 'approve-b'].map((h) => stack.startAgent(h, PLAN)));
    const ids = await Promise.all(
      agents.map((a) => startRun(stack, { agentId: a.id, mode: 'apply', approval: 'required' })),
    );
    const waiting = await Promise.all(
      ids.map((id) => stack.waitForRun(id, (r) => r.phase === 'awaiting-approval', 60_000)),
    );
    assert.equal(await stack.killApi('SIGTERM'), 0, 'a clean stop');
    await stack.startApi();
    for (const run of waiting) {
      const r = await stack.approve(run.id, run.planHash);
      assert.equal(r.status, 200, JSON.stringify(r.body));
    }
    const outcomes: string[] = [];
    for (const [i, id] of ids.entries()) {
      const run = await stack.waitForOutcome(id, 60_000);
      assert.equal(run.outcome, 'completed', run.failureReason);
      assert.equal(run.approvedBy, 'alice');
      assert.equal(count(agents[i], 'apply'), 1);
      outcomes.push(await assertAgreement(stack, id));
    }
    record(
      '5',
      'two runs awaiting approval; stop and restart the API; approve both through it',
      `${outcomes.join(', ')}`,
    );
  });
});

describe('fault: the Temporal dev server dies', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pn-fault-temporal-'));
  let temporal: OwnDevServer;
  let stack: ProcessStack;
  before(async () => {
    temporal = await ownDevServer(dir);
    stack = await new ProcessStack(DEFAULTS, temporal.address).start();
  });
  after(async () => {
    await stack?.stop();
    await temporal?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('4. the dev server killed mid-run and restarted on its SQLite file: the run resumes and completes', async () => {
    const agent = await stack.startAgent('kill-temporal', PLAN);
    writeFileSync(path.join(agent.fixtureDir, 'delay-dry-run'), '3');
    const id = await startRun(stack, { agentId: agent.id, mode: 'apply', approval: 'auto' });
    await waitUntil('the dry-run to start', () => calls(agent).includes('dry-run'));
    await temporal.kill();
    await temporal.restart();
    const run = await stack.waitForOutcome(id, 120_000);
    assert.equal(run.outcome, 'completed', run.failureReason);
    assert.equal(count(agent, 'apply'), 1);
    const outcome = await assertAgreement(stack, id);
    record(
      '4',
      'kill -9 the dev server during the dry-run; start it again on the same port and SQLite file',
      `${outcome}; apply ran once (dry-run ran ${count(agent, 'dry-run')}×)`,
    );
  });
});

describe('the supervisor backs off a crash loop and stops cleanly', () => {
  it('restart delays double from 1 s to 30 s; a crashing child is restarted with growing delays until stop()', async () => {
    assert.deepEqual(
      [1, 2, 3, 5, 6, 20].map((n) => restartDelay(n)),
      [1000, 2000, 4000, 16_000, 30_000, 30_000],
    );
    const lines: string[] = [];
    const supervisor = new Supervisor((l) => lines.push(l), { initialMs: 20, maxMs: 80, healthyAfterMs: 60_000 });
    await supervisor.add('crasher', () => spawn(process.execPath, ['-e', 'process.exit(3)']));
    await waitUntil('four restarts', () => lines.length >= 4, 10_000);
    await supervisor.stop();
    const settled = lines.length;
    assert.deepEqual(lines.slice(0, 4), [
      'supervisor | restarting crasher after exit 3 (attempt 1, in 0.02s)',
      'supervisor | restarting crasher after exit 3 (attempt 2, in 0.04s)',
      'supervisor | restarting crasher after exit 3 (attempt 3, in 0.08s)',
      'supervisor | restarting crasher after exit 3 (attempt 4, in 0.08s)',
    ]);
    await sleep(300);
    assert.equal(lines.length, settled, 'nothing restarts after stop()');
    assert.equal(supervisor.child('crasher'), null);
  });

  it('does not restart a child that exits with a code it was told is final (a revoked agent exits 77)', async () => {
    const lines: string[] = [];
    const supervisor = new Supervisor((l) => lines.push(l), { initialMs: 20, maxMs: 80, healthyAfterMs: 60_000 });
    let starts = 0;
    await supervisor.add(
      'agent',
      () => {
        starts++;
        return spawn(process.execPath, ['-e', 'process.exit(77)']);
      },
      { 77: 'an admin revoked it' },
    );
    await waitUntil('the exit to be seen', () => lines.length >= 1, 10_000);
    await sleep(300); // more than the first restart delays
    await supervisor.stop();
    assert.deepEqual(lines, ['supervisor | not restarting agent: it exited 77 (an admin revoked it)']);
    assert.equal(starts, 1);
  });
});

describe('npm start supervises its processes', () => {
  const data = mkdtempSync(path.join(os.tmpdir(), 'pn-fault-start-'));
  let start: ChildProcess;
  let log = '';
  let apiUrl = '';
  /** Every process npm start ever ran, so none is left behind whatever happens. */
  const seen = new Set<number>();
  const marker = `PATCHNANNY_DATA_DIR=${data}`;
  const childNamed = (what: string) =>
    waitUntil(`npm start's ${what} process`, () => {
      const pid = descendants(start.pid!).find((p) => {
        try {
          return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(what);
        } catch {
          return false;
        }
      });
      if (pid) seen.add(pid);
      return pid;
    });
  const healthy = async () => {
    try {
      return (await fetch(`${apiUrl}/healthz`)).ok;
    } catch {
      return false;
    }
  };

  before(async () => {
    const [port, temporalPort, uiPort, gatePort, gateHealthPort] = await Promise.all([
      freePort(),
      freePort(),
      freePort(),
      freePort(),
      freePort(),
    ]);
    apiUrl = `http://127.0.0.1:${port}`;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PATCHNANNY_DATA_DIR: data,
      PORT: String(port),
      PATCHNANNY_TEMPORAL_PORT: String(temporalPort),
      PATCHNANNY_TEMPORAL_UI_PORT: String(uiPort),
      PATCHNANNY_GATE_LISTEN: `127.0.0.1:${gatePort}`,
      PATCHNANNY_GATE_HEALTH_LISTEN: `127.0.0.1:${gateHealthPort}`,
      PATCHNANNY_SCRIPTS_DIR: FIXTURE_SCRIPTS,
      PATCHNANNY_AGENT_HOSTNAME: 'supervised',
    };
    delete env.TEMPORAL_ADDRESS; // npm start owns its dev server here
    delete env.DATABASE_URL; // and its embedded database
    start = spawn(process.execPath, [path.join(DIST, 'scripts/dev/start.js')], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    start.stdout!.on('data', (b: Buffer) => (log += b.toString()));
    start.stderr!.on('data', (b: Buffer) => (log += b.toString()));
    await waitUntil('npm start to be up', () => log.includes('patchnanny is up') || start.exitCode !== null, 180_000);
    assert.ok(log.includes('patchnanny is up'), log);
  });
  after(async () => {
    if (start.exitCode === null && start.signalCode === null) {
      start.kill('SIGTERM');
      await Promise.race([exited(start), sleep(30_000)]);
    }
    for (const pid of [...seen, ...descendants(start.pid!)]) if (aliveWith(pid, marker)) process.kill(pid, 'SIGKILL');
    rmSync(data, { recursive: true, force: true });
  });

  const restarted = (name: string) =>
    waitUntil(`the log to say ${name} was restarted`, () => {
      if (start.exitCode !== null || start.signalCode !== null) throw new Error('npm start itself stopped');
      return new RegExp(`restarting ${name} after exit SIGKILL \\(attempt 1, in 1s\\)`).test(log);
    });

  it('kill -9 of the agent, the API or the dev server restarts that process; the rest stays up; Ctrl-C stops all', async () => {
    await supervised().catch((err: Error) => {
      err.message += `\nnpm start's log:\n${log}`;
      throw err;
    });
    record(
      'S',
      'npm start: kill -9 its agent, its API, its dev server; then SIGTERM it',
      'each restarted (log says so, /healthz answers); SIGTERM stops all, exit 0',
    );
  });

  async function supervised() {
    // The agent's own line, not the SDK's "not polling for workflow tasks".
    const polls = () => (log.match(/\[agent\] \S+ \(.*\) polling agent\./g) ?? []).length;
    await waitUntil('the agent to poll', () => polls() === 1);
    const agent = await childNamed('agent-worker/main.js');
    process.kill(agent, 'SIGKILL');
    await restarted('agent');
    await waitUntil('a new agent process', async () => (await childNamed('agent-worker/main.js')) !== agent);
    await waitUntil('the new agent to poll', () => polls() === 2);

    const api = await childNamed('api/main.js');
    process.kill(api, 'SIGKILL');
    await restarted('api');
    await waitUntil('/healthz after the API restart', healthy);

    const temporal = await childNamed('start-dev');
    const cmdline = readFileSync(`/proc/${temporal}/cmdline`, 'utf8');
    process.kill(temporal, 'SIGKILL');
    await restarted('temporal');
    const again = await waitUntil('a new dev server', async () => {
      const p = await childNamed('start-dev');
      return p !== temporal && p;
    });
    assert.equal(readFileSync(`/proc/${again}/cmdline`, 'utf8'), cmdline, 'same SQLite file, same port');
    await waitUntil('/healthz after the dev server restart', healthy, 90_000);
    assert.equal(start.exitCode, null, 'npm start itself is still running');

    const all = descendants(start.pid!);
    start.kill('SIGTERM');
    assert.equal(await Promise.race([exited(start), sleep(45_000).then(() => 'still running')]), 0);
    assert.deepEqual(
      all.filter((p) => aliveWith(p, marker)),
      [],
      'nothing left running',
    );
  }
});
