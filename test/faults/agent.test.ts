/**
 * Fault matrix, agent side (issue 14): real Temporal, PostgreSQL, API, control worker and agent
 * processes. Each case prints its outcome; the table at the end is docs/faults-agent.md's source.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Stack, type TestAgent } from '../support/stack';
import { until } from '../support/wait';

const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security'];
/** The agents here SIGKILL a stopped dry-run's group 2 s after SIGTERM (30 s in production). */
const KILL_GRACE_MS = 2000;
process.env.PATCHNANNY_SCRIPT_KILL_GRACE_MS = String(KILL_GRACE_MS);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const outcomes: { case: string; outcome: string }[] = [];
const record = (name: string, outcome: string) => {
  outcomes.push({ case: name, outcome });
  console.log(`# fault ${name}: ${outcome}`);
};

/** Processes (not zombies) of a run's script: everything started with its PATCHNANNY_RUN_ID. */
function scriptProcesses(runId: string): { pid: number; comm: string }[] {
  const found: { pid: number; comm: string }[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const env = readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0');
      if (!env.includes(`PATCHNANNY_RUN_ID=${runId}`)) continue;
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (/^\d+ \(.*\) Z/.test(stat)) continue;
      found.push({ pid: Number(pid), comm: readFileSync(`/proc/${pid}/comm`, 'utf8').trim() });
    } catch {
      /* gone while we looked */
    }
  }
  return found;
}

const alive = (agent: TestAgent) => agent.process.exitCode === null && agent.process.signalCode === null;
const calls = (agent: TestAgent) => {
  const file = path.join(agent.fixtureDir, 'calls.log');
  return existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n') : [];
};

describe('fault matrix, agent side', { concurrency: true }, () => {
  const stack = new Stack();
  before(() => stack.start());
  after(async () => {
    await stack.stop();
    console.log('# agent-side fault cases');
    console.table(outcomes);
  });

  it('(7) a script that hangs past its timeout is gone afterwards, the agent lives and serves the next run', async () => {
    const agent = await stack.startAgent('fault-hang', PLAN);
    writeFileSync(path.join(agent.fixtureDir, 'delay-dry-run'), '600');
    const started = Date.now();
    const r = await stack.http('POST', '/v1/runs', {
      body: { agentId: agent.id, mode: 'dry-run', timeouts: { scriptMs: 3000 } },
    });
    assert.equal(r.status, 202);
    const id: string = r.body.run.id;
    await until('the script hangs in sleep', () => scriptProcesses(id).some((p) => p.comm === 'sleep'));
    // Only the first attempt hangs: the retry Temporal schedules finds a healthy mirror.
    rmSync(path.join(agent.fixtureDir, 'delay-dry-run'));
    await until('the hung script is gone', () => scriptProcesses(id).length === 0, 30_000);
    const goneAfter = Date.now() - started;
    // The old SIGKILL timer fired 10 s after the SIGTERM on a group already gone and crashed the
    // agent with ESRCH; the timer now fires after KILL_GRACE_MS: the agent must outlive both.
    await sleep(12_000);
    assert.ok(alive(agent), `the agent is still running:\n${agent.output()}`);
    const run = await stack.waitForOutcome(id, 60_000);
    assert.equal(run.outcome, 'completed');
    assert.deepEqual(calls(agent), ['dry-run', 'dry-run'], 'the timed-out attempt, then its retry');
    const next = await stack.http('POST', '/v1/runs', { body: { agentId: agent.id, mode: 'dry-run' } });
    assert.equal((await stack.waitForOutcome(next.body.run.id)).outcome, 'completed');
    assert.ok(alive(agent));
    record(
      '7 script hangs past its timeout',
      `attempt timed out at 3 s, script group gone ${(goneAfter / 1000).toFixed(1)} s after start; ` +
        `agent alive 12 s later; retry → run ${run.outcome}; next run completed`,
    );
  });

  it('(8) an agent whose state folder is on a full filesystem fails the run naming it and executes nothing', async (t) => {
    const agent = await stack.startAgent('fault-full', PLAN);
    // A 64 KB tmpfs over the agent's state folder (the running agent holds its identity in memory).
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', agent.stateDir], { stdio: 'pipe' });
    } catch (err) {
      const why = `cannot mount a tmpfs here (${String((err as { stderr?: Buffer }).stderr ?? err).trim()})`;
      record('8 state folder on a full filesystem', `SKIPPED: ${why}`);
      t.skip(why);
      return;
    }
    try {
      const filler = path.join(agent.stateDir, 'filler');
      try {
        writeFileSync(filler, Buffer.alloc(64 * 1024, 1));
      } catch (err) {
        assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC', 'filled to the last byte');
      }
      const r = await stack.http('POST', '/v1/runs', { body: { agentId: agent.id, mode: 'dry-run' } });
      // hash-verify retries (5 attempts, 1 s → 8 s backoff): space may come back.
      const run = await stack.waitForOutcome(r.body.run.id, 90_000);
      assert.equal(run.outcome, 'failed');
      assert.match(run.failureReason, /^agent-state-full: agent state folder .* is full \(ENOSPC\)/);
      const left = readdirSync(path.join(agent.stateDir, 'scripts'));
      assert.deepEqual(left, [], 'no half-written script, no temporary file');
      assert.deepEqual(calls(agent), [], 'nothing executed');
      assert.ok(alive(agent));
      record(
        '8 state folder on a full filesystem',
        `run ${run.outcome}: ${run.failureReason.slice(0, 60)}…; nothing stored or executed`,
      );
    } finally {
      execFileSync('umount', [agent.stateDir]);
    }
  });

  it('(9) a stored script tampered with between plan and apply is never executed; the run fails saying why', async () => {
    const agent = await stack.startAgent('fault-tamper', PLAN);
    const r = await stack.http('POST', '/v1/runs', { body: { agentId: agent.id, mode: 'apply' } });
    const id: string = r.body.run.id;
    const waiting = await stack.waitForRun(id, (x) => x.phase === 'awaiting-approval');
    const marker = path.join(agent.fixtureDir, 'pwned');
    const [stored] = readdirSync(path.join(agent.stateDir, 'scripts'));
    writeFileSync(path.join(agent.stateDir, 'scripts', stored), `#!/bin/bash\ntouch ${marker}\n`);
    const a = await stack.approve(id, waiting.planHash);
    assert.equal(a.status, 200, JSON.stringify(a.body));
    const run = await stack.waitForOutcome(id);
    assert.equal(run.outcome, 'failed');
    assert.match(
      run.failureReason,
      /^script-hash-mismatch: stored script [0-9a-f]{64} now hashes to [0-9a-f]{64}; refusing/,
    );
    assert.equal(existsSync(marker), false, 'the tampered copy never ran');
    assert.equal(existsSync(path.join(agent.fixtureDir, 'applied')), false);
    record(
      '9a stored script tampered between plan and apply',
      `run ${run.outcome}: script-hash-mismatch; not executed`,
    );
  });

  it('(9) a stored script tampered with before a run is replaced by a verified download, never executed', async () => {
    const agent = await stack.startAgent('fault-tamper-before', PLAN);
    const first = await stack.http('POST', '/v1/runs', { body: { agentId: agent.id, mode: 'dry-run' } });
    assert.equal((await stack.waitForOutcome(first.body.run.id)).outcome, 'completed');
    const marker = path.join(agent.fixtureDir, 'pwned');
    const [stored] = readdirSync(path.join(agent.stateDir, 'scripts'));
    writeFileSync(path.join(agent.stateDir, 'scripts', stored), `#!/bin/bash\ntouch ${marker}\n`);
    const r = await stack.http('POST', '/v1/runs', { body: { agentId: agent.id, mode: 'dry-run' } });
    const run = await stack.waitForOutcome(r.body.run.id);
    assert.equal(run.outcome, 'completed');
    assert.equal(existsSync(marker), false, 'the tampered copy never ran');
    assert.deepEqual(calls(agent), ['dry-run', 'dry-run']);
    // The run's history says why the script was downloaded again.
    const history = await stack.temporal.workflow.getHandle(r.body.run.id).fetchHistory();
    const results = (history.events ?? []).flatMap((e) =>
      (e.activityTaskCompletedEventAttributes?.result?.payloads ?? []).map((p) => Buffer.from(p.data ?? []).toString()),
    );
    assert.ok(
      results.some((x) => /"replacedTampered":"[0-9a-f]{64}"/.test(x)),
      'hash-verify reports the replaced copy',
    );
    assert.match(agent.output(), /had been changed .* removed, fetching it again/);
    record(
      '9b stored script tampered before a run',
      `replaced by a verified download (in history); run ${run.outcome}`,
    );
  });

  it('an agent stopped (SIGTERM) mid-dry-run stops the script at once and the restarted agent completes the run', async () => {
    const agent = await stack.startAgent('fault-stop-dry', PLAN);
    writeFileSync(path.join(agent.fixtureDir, 'delay-dry-run'), '600');
    const r = await stack.http('POST', '/v1/runs', { body: { agentId: agent.id, mode: 'dry-run' } });
    const id: string = r.body.run.id;
    await until('the script hangs in sleep', () => scriptProcesses(id).some((p) => p.comm === 'sleep'));
    rmSync(path.join(agent.fixtureDir, 'delay-dry-run'));
    const stopped = Date.now();
    agent.process.kill('SIGTERM');
    await new Promise((res) => (alive(agent) ? agent.process.once('exit', res) : res(null)));
    const stopMs = Date.now() - stopped;
    assert.deepEqual(scriptProcesses(id), [], 'the dry-run went with the agent');
    assert.ok(stopMs < 20_000, `the agent stopped in ${stopMs} ms`);
    await stack.restartAgent(agent, 'fault-stop-dry');
    const run = await stack.waitForOutcome(id, 60_000);
    assert.equal(run.outcome, 'completed');
    record(
      'agent SIGTERM mid-dry-run',
      `script stopped, agent exited in ${(stopMs / 1000).toFixed(1)} s; retried on restart → run ${run.outcome}`,
    );
  });

  it('an agent stopped (SIGTERM) mid-apply waits for the apply to finish and reports it', async () => {
    const agent = await stack.startAgent('fault-stop-apply', PLAN);
    writeFileSync(path.join(agent.fixtureDir, 'delay-apply'), '5');
    const r = await stack.http('POST', '/v1/runs', { body: { agentId: agent.id, mode: 'apply', approval: 'auto' } });
    const id: string = r.body.run.id;
    await until('the apply runs', () => scriptProcesses(id).some((p) => p.comm === 'sleep'));
    agent.process.kill('SIGTERM');
    await sleep(1000);
    assert.ok(alive(agent), 'the agent waits for its apply');
    await new Promise((res) => (alive(agent) ? agent.process.once('exit', res) : res(null)));
    assert.equal(existsSync(path.join(agent.fixtureDir, 'applied')), true, 'the apply ran to its end');
    const run = await stack.waitForOutcome(id, 30_000);
    assert.equal(run.outcome, 'completed');
    assert.deepEqual(calls(agent), ['dry-run', 'apply']);
    record('agent SIGTERM mid-apply', `agent waited for the apply, then exited; run ${run.outcome}`);
  });
});
