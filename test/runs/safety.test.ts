import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Stack } from '../support/stack';

const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security'];

describe('runs that must not execute anything', { concurrency: true }, () => {
  const stack = new Stack();
  before(() => stack.start());
  after(() => stack.stop());

  it('an agent that is offline ends the run as agent-unreachable within its pickup timeout', async () => {
    const agentId = await stack.registerOffline('offline-host');
    const PICKUP_MS = 5000;
    const r = await stack.http('POST', '/v1/runs', {
      body: { agentId, mode: 'dry-run', timeouts: { agentPickupMs: PICKUP_MS } },
    });
    assert.equal(r.status, 202);
    const run = await stack.waitForOutcome(r.body.run.id, PICKUP_MS + 60_000);
    assert.equal(run.outcome, 'agent-unreachable');
    assert.match(run.failureReason, new RegExp(`did not pick up .* within ${PICKUP_MS} ms`));
    // Measured on the run's own clock (created → finished), not the test's: it ends at the pickup
    // timeout, never before it, and not long after (the margin is for the timer and a loaded machine).
    const took = Date.parse(run.finishedAt) - Date.parse(run.createdAt);
    assert.ok(took >= PICKUP_MS, `ended after ${took} ms, before the pickup timeout`);
    assert.ok(took < 3 * PICKUP_MS, `ended ${took} ms after it started, far beyond the ${PICKUP_MS} ms pickup timeout`);
  });

  it('an apply whose agent dies mid-transaction is not retried: the run fails and the approved plan is never applied twice', async () => {
    const agent = await stack.startAgent('crash-host', PLAN);
    writeFileSync(path.join(agent.fixtureDir, 'delay-apply'), '8');
    const r = await stack.http('POST', '/v1/runs', {
      body: { agentId: agent.id, mode: 'apply', approval: 'auto', timeouts: { scriptMs: 20_000 } },
    });
    const id = r.body.run.id;
    const calls = () =>
      existsSync(path.join(agent.fixtureDir, 'calls.log'))
        ? readFileSync(path.join(agent.fixtureDir, 'calls.log'), 'utf8').trim().split('\n')
        : [];
    await stack.waitForRun(id, () => calls().includes('apply'));
    agent.process.kill('SIGKILL'); // the host's agent dies; its script is still running
    const again = await stack.restartAgent(agent, 'crash-host');
    assert.equal(again.id, agent.id, 'the restarted agent re-uses its identity');
    const run = await stack.waitForOutcome(id, 30_000);
    assert.equal(run.outcome, 'failed');
    assert.match(run.failureReason, /heartbeat/i);
    await new Promise((res) => setTimeout(res, 1500));
    assert.deepEqual(calls(), ['dry-run', 'apply'], 'apply ran once, never again on the restarted agent');
  });

  it('cancelling a waiting run ends it as cancelled without applying', async () => {
    const agent = await stack.startAgent('cancel-host', PLAN);
    const r = await stack.http('POST', '/v1/runs', { body: { agentId: agent.id, mode: 'apply' } });
    const id = r.body.run.id;
    await stack.waitForRun(id, (x) => x.phase === 'awaiting-approval');
    const c = await stack.http('POST', `/v1/runs/${id}/cancel`);
    assert.equal(c.status, 202);
    const run = await stack.waitForOutcome(id);
    assert.equal(run.outcome, 'cancelled');
    assert.equal(existsSync(path.join(agent.fixtureDir, 'applied')), false);
  });
});

// Its own control plane: this test rewrites the served script, which no other run may see.
describe('a tampered script', () => {
  const stack = new Stack();
  before(() => stack.start());
  after(() => stack.stop());

  it('a script whose content no longer matches its pinned hash is never executed and the run fails as script-hash-mismatch', async () => {
    const agent = await stack.startAgent('tampered-host', PLAN);
    const marker = path.join(agent.fixtureDir, 'pwned');
    // The served content changes behind the pinned hash (a tampered mirror, a bad deploy).
    await stack.database
      .db('scripts')
      .where({ name: 'apt-update.sh' })
      .update({ content: `#!/bin/bash\ntouch ${marker}\necho '{}'\n` });
    const r = await stack.http('POST', '/v1/runs', { body: { agentId: agent.id, mode: 'apply', approval: 'auto' } });
    assert.equal(r.status, 202);
    const run = await stack.waitForOutcome(r.body.run.id);
    assert.equal(run.outcome, 'failed');
    assert.match(run.failureReason, /^script-hash-mismatch: /);
    assert.equal(existsSync(marker), false, 'the tampered script never ran');
    assert.equal(existsSync(path.join(agent.fixtureDir, 'calls.log')), false, 'no script ran at all');
  });
});
