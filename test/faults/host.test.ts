import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FIXTURE_SCRIPTS, replayHistory, Stack, TRIGGER_ONLY_WINDOW, type TestAgent } from '../support/stack';

const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The fixture patch script, wrapped so every execution writes its start and end (epoch ms) to
 * spans.log: whether two scripts ever ran on one host at the same time is then a fact, not a guess.
 */
function spanningScripts(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pn-spans-'));
  writeFileSync(
    path.join(dir, 'apt-update.sh'),
    `#!/usr/bin/env bash
set -uo pipefail
printf 'start %s %s\\n' "$(date +%s%3N)" "$1" >>"$PN_FIXTURE_DIR/spans.log"
bash ${JSON.stringify(path.join(FIXTURE_SCRIPTS, 'apt-update.sh'))} "$@"
code=$?
printf 'end %s %s\\n' "$(date +%s%3N)" "$1" >>"$PN_FIXTURE_DIR/spans.log"
exit "$code"
`,
  );
  return dir;
}

/** [start, end] of every script execution on the agent's host, in order of start. */
function spans(agent: TestAgent): [number, number][] {
  const file = path.join(agent.fixtureDir, 'spans.log');
  if (!existsSync(file)) return [];
  const starts: number[] = [];
  const out: [number, number][] = [];
  for (const line of readFileSync(file, 'utf8').trim().split('\n')) {
    const [what, at] = line.split(' ');
    if (what === 'start') starts.push(Number(at));
    else out.push([starts.shift()!, Number(at)]);
  }
  return out.sort((a, b) => a[0] - b[0]);
}

describe(
  'fault: two runs for one host at once, and cancels that must not interrupt an apply',
  { concurrency: true },
  () => {
    const stack = new Stack();
    const scripts = spanningScripts();
    before(() => stack.start(scripts));
    after(async () => {
      await stack.stop();
      rmSync(scripts, { recursive: true, force: true });
    });

    const start = async (agentId: string, body: Record<string, unknown>) => {
      const r = await stack.http('POST', '/v1/runs', { body: { agentId, ...body } });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      return r.body.run.id as string;
    };

    it('runs started for one host at once take turns: the second is queued behind the first, no two scripts overlap', async () => {
      const agent = await stack.startAgent('two-at-once', PLAN);
      writeFileSync(path.join(agent.fixtureDir, 'delay-dry-run'), '3');
      writeFileSync(path.join(agent.fixtureDir, 'delay-apply'), '3');
      const [first, second, third] = await Promise.all([
        start(agent.id, { mode: 'apply', approval: 'auto' }),
        start(agent.id, { mode: 'apply', approval: 'auto' }),
        start(agent.id, { mode: 'dry-run' }),
      ]);
      // Whichever gets the host first, another waits its turn and the API says where it stands.
      const waiting = await stack.waitFor(
        'a run waiting its turn in the queued phase',
        async () => {
          for (const id of [first, second, third]) {
            const run = (await stack.http('GET', `/v1/runs/${id}`)).body.run;
            if (run.phase === 'queued' && run.queue) return run;
          }
          return false;
        },
        60_000,
      );
      assert.ok(waiting.queue.position >= 1, `a place in the queue: ${JSON.stringify(waiting.queue)}`);
      assert.ok([first, second, third].includes(waiting.queue.holder) && waiting.queue.holder !== waiting.id);

      const done = await Promise.all([first, second, third].map((id) => stack.waitForOutcome(id, 120_000)));
      for (const r of done) assert.equal(r.outcome, 'completed', `${r.id}: ${r.failureReason}`);
      // Runs that queued, were granted their host and released it replay deterministically.
      for (const r of done) await replayHistory(stack.temporal, r.id);
      const s = spans(agent);
      assert.ok(s.length >= 4, `every run's scripts ran (${s.length} executions)`);
      for (let i = 1; i < s.length; i++) {
        assert.ok(
          s[i][0] >= s[i - 1][1],
          `script ${i} started ${s[i][0] - s[i - 1][1]} ms before script ${i - 1} ended`,
        );
      }
    });

    it('a run cancelled while queued ends cancelled, runs no script, and does not block the host', async () => {
      const agent = await stack.startAgent('queued-cancel', PLAN);
      writeFileSync(path.join(agent.fixtureDir, 'delay-dry-run'), '4');
      const busy = await start(agent.id, { mode: 'dry-run' });
      while (!existsSync(path.join(agent.fixtureDir, 'spans.log'))) await sleep(100);
      const waiting = await start(agent.id, { mode: 'dry-run' });
      await stack.waitForRun(waiting, (r) => r.phase === 'queued', 30_000);
      assert.equal((await stack.http('POST', `/v1/runs/${waiting}/cancel`)).status, 202);
      const cancelled = await stack.waitForOutcome(waiting, 30_000);
      assert.equal(cancelled.outcome, 'cancelled');
      assert.equal((await stack.waitForOutcome(busy, 60_000)).outcome, 'completed');
      assert.equal(spans(agent).length, 1, 'the cancelled run never ran its script');
      // The host is free again: a new run goes straight through.
      const next = await start(agent.id, { mode: 'dry-run' });
      assert.equal((await stack.waitForOutcome(next, 60_000)).outcome, 'completed');
    });

    it('a cancel during apply does not interrupt it: the apply finishes and the run says so', async () => {
      const agent = await stack.startAgent('cancel-apply', PLAN);
      writeFileSync(path.join(agent.fixtureDir, 'delay-apply'), '4');
      const id = await start(agent.id, { mode: 'apply', approval: 'auto' });
      while (
        !readFileSync(path.join(agent.fixtureDir, 'spans.log'), { encoding: 'utf8', flag: 'a+' }).includes('--apply')
      )
        await sleep(100);
      assert.equal((await stack.http('POST', `/v1/runs/${id}/cancel`)).status, 202);
      const run = await stack.waitForOutcome(id, 60_000);
      assert.equal(run.outcome, 'completed');
      assert.match(run.failureReason, /cancel requested during apply; the apply was not interrupted/);
      assert.ok(existsSync(path.join(agent.fixtureDir, 'applied')), 'the apply ran to its end');
      assert.deepEqual(
        run.changed.map((c: any) => c.name),
        ['openssl'],
      );
      const [, applySpan] = spans(agent);
      assert.ok(applySpan[1] - applySpan[0] >= 4000, 'the script was not killed early');
    });

    it('cancelling a window under way never kills an apply it started', async () => {
      const agent = await stack.startAgent('cancel-window', PLAN);
      writeFileSync(path.join(agent.fixtureDir, 'delay-apply'), '4');
      const w = await stack.createWindow({ ...TRIGGER_ONLY_WINDOW, targets: { agentIds: [agent.id] } });
      const row = await stack.triggerFirstRun(w.id);
      while (
        !readFileSync(path.join(agent.fixtureDir, 'spans.log'), { encoding: 'utf8', flag: 'a+' }).includes('--apply')
      )
        await sleep(100);
      const parent = String((await stack.temporal.workflow.getHandle(row.id).describe()).parentExecution?.workflowId);
      assert.match(parent, /^window\./);
      await stack.temporal.workflow.getHandle(parent).cancel();
      const run = await stack.waitForOutcome(row.id, 60_000);
      assert.equal(run.outcome, 'completed');
      assert.ok(existsSync(path.join(agent.fixtureDir, 'applied')));
      const report = await stack.temporal.workflow.getHandle(parent).result();
      assert.deepEqual(
        report.runs.map((r: any) => [r.runId, r.outcome]),
        [[row.id, 'completed']],
      );
    });
  },
);
