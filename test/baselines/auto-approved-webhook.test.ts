/**
 * `plan.auto-approved` (docs/webhooks.md): when a patch baseline approves a run's plan, nobody is
 * asked, so a subscribed receiver is told which baseline approved it and by which rule each
 * package was covered. A plan that waits for a person does not send it, even once approved.
 * Real Temporal, real PostgreSQL, real agents, a local HTTP receiver checking the signature.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { webhookEvents } from '../../activities/control/webhooks';
import { fixture } from '../support/fixture';
import { Stack } from '../support/stack';

const OPENSSL = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security true DSA-5999-1:Important'];
const CURL = ['curl amd64 7.88.1-10 7.88.1-11 bookworm false'];

interface Received {
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

describe('webhook plan.auto-approved', { concurrency: false }, () => {
  const stack = new Stack();
  const received: Received[] = [];
  let receiver: Server;
  let secret = '';

  before(async () => {
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({ headers: req.headers, body: Buffer.concat(chunks).toString() });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    await stack.start();
    const made = await stack.http('POST', '/v1/webhooks', {
      body: {
        url: `http://127.0.0.1:${(receiver.address() as { port: number }).port}/hooks`,
        events: ['plan.auto-approved', 'plan.awaiting-approval'],
      },
    });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    secret = made.body.secret;
    const baseline = await stack.http('POST', '/v1/baselines', {
      body: { name: 'edge-openssl', selector: 'role=edge', rules: { patterns: ['openssl*'] } },
    });
    assert.equal(baseline.status, 201, JSON.stringify(baseline.body));
  });
  after(async () => {
    await stack.stop();
    await new Promise((r) => receiver.close(r));
  });

  const events = (type: string, runId: string) => received.filter((r) => JSON.parse(r.body).id === `${type}:${runId}`);
  const applyRequired = async (agentId: string) => {
    const r = await stack.http('POST', '/v1/runs', { body: { agentId, mode: 'apply', approval: 'required' } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return r.body.run.id as string;
  };

  it('a baseline-approved run sends it once, signed, naming the baseline and each package’s rule', async () => {
    const agent = await stack.startAgent('aa-edge', OPENSSL, undefined, { PATCHNANNY_LABELS: 'role=edge' });
    const runId = await applyRequired(agent.id);
    const run = await stack.waitForOutcome(runId, 60_000);
    assert.equal(run.outcome, 'completed', run.failureReason);
    assert.equal(run.approvedBy, 'baseline:edge-openssl');
    assert.ok(fixture(agent).applied());

    const got = await stack.waitFor('the plan.auto-approved delivery', () =>
      Promise.resolve(events('plan.auto-approved', runId)[0]),
    );
    assert.equal(got.headers['x-patchnanny-event'], 'plan.auto-approved');
    const header = String(got.headers['x-patchnanny-signature']);
    const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header);
    assert.ok(m, header);
    assert.equal(createHmac('sha256', secret).update(`${m[1]}.${got.body}`).digest('hex'), m[2]);
    const { type, data } = JSON.parse(got.body);
    assert.equal(type, 'plan.auto-approved');
    assert.equal(data.runId, runId);
    assert.equal(data.agentId, agent.id);
    assert.equal(data.planHash, run.planHash);
    assert.equal(data.baseline, 'edge-openssl');
    assert.equal(data.approvedBy, 'baseline:edge-openssl');
    assert.deepEqual(data.packages, run.approvedByBaseline.packages, 'the rules as recorded on the run');
    assert.deepEqual(
      data.packages.map((p: any) => [p.name, p.rule, p.pattern]),
      [['openssl', 'pattern', 'openssl*']],
    );
    assert.deepEqual(events('plan.awaiting-approval', runId), [], 'nobody was asked');

    // A retried recordDecision emits again: the same delivery, not a second one.
    const again = webhookEvents(stack.database.db, stack.temporal, stack.controlQueue);
    await again.decision({
      runId,
      kind: 'approve',
      by: run.approvedBy,
      reason: null,
      baseline: run.approvedByBaseline,
      planHash: run.planHash,
      phase: 'applying',
    });
    const rows = await stack.database.db('webhook_deliveries').where({ event_id: `plan.auto-approved:${runId}` });
    assert.equal(rows.length, 1);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(events('plan.auto-approved', runId).length, 1, 'delivered once');
  });

  it('a plan left waiting for a person does not send it, nor does the person’s approval', async () => {
    const agent = await stack.startAgent('aa-mixed', [...OPENSSL, ...CURL], undefined, {
      PATCHNANNY_LABELS: 'role=edge',
    });
    const runId = await applyRequired(agent.id);
    const waiting = await stack.waitForRun(runId, (r) => r.phase === 'awaiting-approval' || r.outcome !== null);
    assert.equal(waiting.phase, 'awaiting-approval', waiting.failureReason);
    await stack.waitFor('the plan.awaiting-approval delivery', () =>
      Promise.resolve(events('plan.awaiting-approval', runId)[0]),
    );
    assert.equal((await stack.approve(runId, waiting.planHash)).status, 200);
    const done = await stack.waitForOutcome(runId, 60_000);
    assert.equal(done.outcome, 'completed', done.failureReason);
    assert.equal(done.approvedBy, 'alice');
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(events('plan.auto-approved', runId), []);
    const rows = await stack.database.db('webhook_deliveries').where({ event: 'plan.auto-approved' });
    assert.equal(rows.length, 1, 'only the first test’s run');
  });
});
