/**
 * Signed webhooks against a real stack and real agent processes: a local HTTP receiver gets each
 * subscribed event once (plan awaiting approval, run failed, agent unreachable), after answering
 * 503 twice (the retries, with backoff, are in the delivery log); the HMAC signature is checked
 * here with node:crypto, independently of the code that made it. A receiver that is down holds
 * up no run, and the API never shows a subscription's secret after creating it. Window events: a
 * heads-up before a window opens (once, however often swept), a firing its Schedule did not start
 * reported as skipped, and a delivery stranded without a workflow picked up by the sweep.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { deliveryId, sweepWebhooks } from '../../activities/control/webhooks';
import { verifyWebhook } from '../../contract/webhooks';
import { replayHistory, Stack } from '../support/stack';

const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security'];

interface Received {
  at: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  answered: number;
}

describe('signed webhooks', () => {
  const stack = new Stack({ approvalMs: 120_000, agentPickupMs: 4_000, scriptMs: 60_000 });
  const received: Received[] = [];
  /** How often each delivery (x-patchnanny-delivery) was answered 503 so far. */
  const refusals = new Map<string, number>();
  let receiver: Server;
  let receiverUrl = '';
  let secret = '';
  let hookId = '';
  let downHookId = '';

  before(async () => {
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const delivery = String(req.headers['x-patchnanny-delivery']);
        const refused = refusals.get(delivery) ?? 0;
        // Each delivery is refused twice (a receiver mid-deploy), then taken.
        const status = refused < 2 ? 503 : 204;
        if (status === 503) refusals.set(delivery, refused + 1);
        received.push({
          at: Date.now(),
          headers: req.headers,
          body: Buffer.concat(chunks).toString(),
          answered: status,
        });
        res.writeHead(status).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    receiverUrl = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/hooks`;
    await stack.start();
    const made = await stack.http('POST', '/v1/webhooks', {
      body: {
        url: receiverUrl,
        events: ['plan.awaiting-approval', 'run.failed', 'agent.unreachable'],
        description: 'ops chat',
      },
    });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    secret = made.body.secret;
    hookId = made.body.webhook.id;
    assert.match(secret, /^whsec_/);
    // A receiver that is down: a port that was free a moment ago, closed again.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const closedPort = (probe.address() as { port: number }).port;
    await new Promise((r) => probe.close(r));
    const down = await stack.http('POST', '/v1/webhooks', {
      body: { url: `http://127.0.0.1:${closedPort}/down`, events: ['plan.awaiting-approval'] },
    });
    assert.equal(down.status, 201, JSON.stringify(down.body));
    downHookId = down.body.webhook.id;
  });
  after(async () => {
    await stack.stop();
    await new Promise((r) => receiver.close(r));
  });

  const taken = (event: string, runId: string) =>
    received.filter((r) => r.answered === 204 && JSON.parse(r.body).id === `${event}:${runId}`);

  it('the secret is shown once: never in a list; subscriptions are admin-only and validated', async () => {
    const list = await stack.http('GET', '/v1/webhooks');
    assert.equal(list.status, 200);
    assert.deepEqual(
      list.body.webhooks.map((w: { id: string }) => w.id),
      [hookId, downHookId],
    );
    assert.ok(!JSON.stringify(list.body).includes(secret));
    assert.ok(!JSON.stringify(list.body).includes('whsec_'));
    const bad = await stack.http('POST', '/v1/webhooks', { body: { url: 'ftp://x/', events: ['run.failed'] } });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.field, 'url');
    // A NUL or control character in the path, or a 1 MB URL: a 400 naming the field, never a 500, nothing stored.
    for (const url of [
      `${receiverUrl}/\u0000x`,
      `${receiverUrl}/a\u001fb`,
      `${receiverUrl}/${'x'.repeat(1_000_000)}`,
    ]) {
      const refused = await stack.http('POST', '/v1/webhooks', { body: { url, events: ['run.failed'] } });
      assert.equal(refused.status, 400, JSON.stringify(refused.body).slice(0, 300));
      assert.equal(refused.body.error.field, 'url');
    }
    assert.equal((await stack.http('GET', '/v1/webhooks')).body.webhooks.length, 2, 'nothing stored');
    const unknown = await stack.http('POST', '/v1/webhooks', { body: { url: receiverUrl, events: ['run.done'] } });
    assert.equal(unknown.status, 400);
    assert.equal(unknown.body.error.field, 'events.0');
  });

  it('plan awaiting approval: delivered once after two 503s, signed, logged; a down receiver holds nothing up', async () => {
    const agent = await stack.startAgent('wh-01', PLAN);
    const started = Date.now();
    const r = await stack.http('POST', '/v1/runs', {
      body: { agentId: agent.id, mode: 'apply', approval: 'required' },
    });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const runId = r.body.run.id as string;
    const waiting = await stack.waitForRun(runId, (x) => x.phase === 'awaiting-approval' || x.outcome !== null);
    assert.equal(waiting.phase, 'awaiting-approval', waiting.failureReason);
    const awaitingAt = Date.now();
    // The run goes on while the down receiver's delivery is still being retried.
    assert.equal((await stack.approve(runId, waiting.planHash)).status, 200);
    const done = await stack.waitForOutcome(runId, 60_000);
    assert.equal(done.outcome, 'completed', done.failureReason);

    const got = await stack.waitFor(
      'the delivery',
      () => Promise.resolve(taken('plan.awaiting-approval', runId)[0]),
      30_000,
    );
    const tries = received.filter((x) => x.headers['x-patchnanny-delivery'] === got.headers['x-patchnanny-delivery']);
    assert.deepEqual(
      tries.map((t) => t.answered),
      [503, 503, 204],
    );
    // Backoff: the second retry waited longer than the first.
    assert.ok(tries[2].at - tries[1].at > tries[1].at - tries[0].at, 'backoff grows');
    const payload = JSON.parse(got.body);
    assert.equal(payload.type, 'plan.awaiting-approval');
    assert.equal(payload.data.runId, runId);
    assert.equal(payload.data.agentId, agent.id);
    assert.equal(payload.data.planHash, waiting.planHash);
    assert.equal(got.headers['x-patchnanny-event'], 'plan.awaiting-approval');
    assert.equal(got.headers['content-type'], 'application/json');

    // The signature, checked as a receiver would, with node:crypto alone.
    const header = String(got.headers['x-patchnanny-signature']);
    const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header);
    assert.ok(m, header);
    assert.equal(createHmac('sha256', secret).update(`${m[1]}.${got.body}`).digest('hex'), m[2]);
    assert.ok(Math.abs(Date.now() / 1000 - Number(m[1])) < 120);
    assert.ok(verifyWebhook(secret, got.body, header));
    assert.ok(!verifyWebhook(secret, got.body.replace('awaiting', 'Awaiting'), header), 'a changed body fails');
    assert.ok(!verifyWebhook('whsec_other', got.body, header), 'another secret fails');

    const log = await stack.http('GET', `/v1/webhooks/${hookId}/deliveries`);
    assert.equal(log.status, 200);
    const entry = log.body.deliveries.find((d: { eventId: string }) => d.eventId === `plan.awaiting-approval:${runId}`);
    assert.equal(entry.status, 'delivered');
    assert.equal(entry.attempts, 3);
    assert.equal(entry.lastStatus, 204);
    assert.equal(entry.lastError, 'HTTP 503');

    const downLog = await stack.http('GET', `/v1/webhooks/${downHookId}/deliveries`);
    const downEntry = downLog.body.deliveries.find((d: { eventId: string }) => d.eventId.endsWith(runId));
    assert.equal(downEntry.status, 'pending');
    assert.ok(downEntry.attempts >= 1);
    assert.match(downEntry.lastError, /no answer: ECONNREFUSED/);
    console.log(
      `webhooks: awaiting-approval ${awaitingAt - started} ms after start; delivered ${got.at - awaitingAt} ms later ` +
        `(2 refusals, backoff ${tries[1].at - tries[0].at} ms then ${tries[2].at - tries[1].at} ms)`,
    );
  });

  it('run failed and agent unreachable: each delivered once; unsubscribed outcomes send nothing', async () => {
    const failing = await stack.startAgent('wh-fail', PLAN);
    writeFileSync(path.join(failing.fixtureDir, 'fail-apply'), '100');
    const f = await stack.http('POST', '/v1/runs', { body: { agentId: failing.id, mode: 'apply', approval: 'auto' } });
    assert.equal(f.status, 202, JSON.stringify(f.body));
    // An agent registered but never running: its run's pickup times out.
    const reg = await stack.http('POST', '/v1/agents', {
      token: stack.enrolToken,
      body: { hostname: 'wh-gone', os: { id: 'debian', versionId: '12', family: 'apt' } },
    });
    assert.equal(reg.status, 201, JSON.stringify(reg.body));
    const u = await stack.http('POST', '/v1/runs', { body: { agentId: reg.body.agent.id, mode: 'dry-run' } });
    assert.equal(u.status, 202, JSON.stringify(u.body));

    assert.equal((await stack.waitForOutcome(f.body.run.id, 60_000)).outcome, 'failed');
    assert.equal((await stack.waitForOutcome(u.body.run.id, 60_000)).outcome, 'agent-unreachable');
    await stack.waitFor('run.failed', () => Promise.resolve(taken('run.failed', f.body.run.id)[0]), 30_000);
    await stack.waitFor(
      'agent.unreachable',
      () => Promise.resolve(taken('agent.unreachable', u.body.run.id)[0]),
      30_000,
    );
    // Once each, however the retries went; and a completed run (previous test) sent nothing.
    assert.equal(taken('run.failed', f.body.run.id).length, 1);
    assert.equal(taken('agent.unreachable', u.body.run.id).length, 1);
    assert.equal(
      received
        .filter((r) => ['run.failed', 'agent.unreachable'].includes(JSON.parse(r.body).type) === false)
        .every((r) => JSON.parse(r.body).type === 'plan.awaiting-approval'),
      true,
    );
    for (const r of received) assert.ok(verifyWebhook(secret, r.body, String(r.headers['x-patchnanny-signature'])));
  });

  it('deleting a subscription cancels its pending deliveries', async () => {
    assert.equal((await stack.http('DELETE', `/v1/webhooks/${downHookId}`)).status, 204);
    assert.equal((await stack.http('GET', `/v1/webhooks/${downHookId}/deliveries`)).status, 404);
    const rows = await stack.database.db('webhook_deliveries').where({ subscription_id: downHookId });
    assert.ok(rows.length >= 1);
    assert.deepEqual(new Set(rows.map((d: { status: string }) => d.status)), new Set(['cancelled']));
    assert.deepEqual(
      (await stack.http('GET', '/v1/webhooks')).body.webhooks.map((w: { id: string }) => w.id),
      [hookId],
    );
  });

  describe('window events and the sweep', () => {
    let windowHookId = '';
    let windowSecret = '';
    let windowId = '';
    const ofType = (type: string) => received.filter((r) => r.answered === 204 && JSON.parse(r.body).type === type);
    const sweep = (upcomingLeadSeconds: number) =>
      sweepWebhooks(stack.database.db, stack.temporal, stack.controlQueue, { upcomingLeadSeconds });

    before(async () => {
      const made = await stack.http('POST', '/v1/webhooks', {
        body: { url: receiverUrl, events: ['window.upcoming', 'window.skipped'] },
      });
      assert.equal(made.status, 201, JSON.stringify(made.body));
      windowHookId = made.body.webhook.id;
      windowSecret = made.body.secret;
      // A target that never runs: a firing during the test would only end as agent-unreachable.
      const reg = await stack.http('POST', '/v1/agents', {
        token: stack.enrolToken,
        body: { hostname: 'wh-window', os: { id: 'debian', versionId: '12', family: 'apt' } },
      });
      assert.equal(reg.status, 201, JSON.stringify(reg.body));
      const w = await stack.http('POST', '/v1/windows', {
        body: {
          name: 'hourly heads-up',
          targets: { agentIds: [reg.body.agent.id] },
          recurrence: { everySeconds: 3600 },
          timezone: 'UTC',
          durationSeconds: 1800,
          cutoffSeconds: 300,
          approval: 'dry-run-only',
        },
      });
      assert.equal(w.status, 201, JSON.stringify(w.body));
      windowId = w.body.window.id;
    });
    after(async () => {
      await stack.http('DELETE', `/v1/windows/${windowId}`);
    });

    it('window.upcoming: one signed heads-up once the opening is within the lead, however often swept', async () => {
      // Too close to the hour, the window would open mid-test and the next heads-up be due: wait it out.
      const left = 3_600_000 - (Date.now() % 3_600_000);
      if (left < 90_000) await new Promise((r) => setTimeout(r, left + 1000));
      const now = Date.now();
      const opening = Math.ceil(now / 3_600_000) * 3_600_000; // everySeconds aligns to the epoch
      const toOpening = Math.floor((opening - now) / 1000);
      // Not yet within a lead shorter than the time left: nothing is sent by this sweep.
      if (toOpening > 5) assert.equal((await sweep(toOpening - 5)).upcoming, 0);
      const first = await sweep(3600);
      const second = await sweep(3600);
      // The control worker's own sweep (24 h lead) may have sent it first: once in all, either way.
      assert.ok(first.upcoming <= 1);
      assert.equal(second.upcoming, 0);
      const got = await stack.waitFor('window.upcoming', () => Promise.resolve(ofType('window.upcoming')[0]), 30_000);
      const payload = JSON.parse(got.body);
      assert.equal(payload.id, `window.upcoming:${windowId}:${new Date(opening).toISOString()}`);
      assert.equal(payload.data.windowId, windowId);
      assert.equal(payload.data.name, 'hourly heads-up');
      assert.equal(payload.data.opensAt, new Date(opening).toISOString());
      assert.equal(payload.data.closesAt, new Date(opening + 1_800_000).toISOString());
      assert.equal(payload.data.targets.agentIds.length, 1);
      assert.equal(got.headers['x-patchnanny-event'], 'window.upcoming');
      assert.ok(verifyWebhook(windowSecret, got.body, String(got.headers['x-patchnanny-signature'])));
      await sweep(3600);
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(ofType('window.upcoming').length, 1);
      const rows = await stack.database
        .db('webhook_deliveries')
        .where({ subscription_id: windowHookId, event: 'window.upcoming' });
      assert.equal(rows.length, 1);
      assert.equal(rows[0].status, 'delivered');
    });

    it('window.skipped: a firing its Schedule did not start runs nothing and says so', async () => {
      const forged = await stack.temporal.workflow.start('maintenanceWindow', {
        taskQueue: stack.controlQueue,
        workflowId: `forged-${windowId}`,
        args: [{ windowId }],
      });
      const report = (await forged.result()) as { runs: unknown[]; skipped: string | null };
      assert.equal(report.runs.length, 0);
      assert.match(String(report.skipped), /was not started by Schedule/);
      const got = await stack.waitFor('window.skipped', () => Promise.resolve(ofType('window.skipped')[0]), 30_000);
      const payload = JSON.parse(got.body);
      assert.equal(payload.data.windowId, windowId);
      assert.equal(payload.data.runId, null);
      assert.equal(payload.data.reason, report.skipped);
      assert.equal(payload.data.firing, `${forged.workflowId}/${forged.firstExecutionRunId}`);
      await replayHistory(stack.temporal, forged.workflowId); // the new activity replays deterministically
      assert.ok(verifyWebhook(windowSecret, got.body, String(got.headers['x-patchnanny-signature'])));
    });

    it('a delivery workflow started by hand with an id no delivery can have ends untrusted-input at once, sending nothing', async () => {
      const before = received.length;
      for (const [workflowId, deliveryId] of [
        ['forged-delivery-nul', 'whd-\u0000'],
        ['forged-delivery-shape', '../../etc/passwd'],
      ]) {
        const forged = await stack.temporal.workflow.start('webhookDelivery', {
          taskQueue: stack.controlQueue,
          workflowId,
          args: [{ deliveryId }],
        });
        assert.equal(await forged.result(), 'untrusted-input');
      }
      assert.equal(received.length, before, 'nothing was sent');
    });

    it('a delivery left pending without a workflow (Temporal was down) is started by the sweep', async () => {
      const eventId = `window.skipped:${windowId}:while-temporal-was-down`;
      const id = deliveryId(windowHookId, eventId);
      const body = { id: eventId, type: 'window.skipped', occurredAt: new Date().toISOString(), data: { windowId } };
      await stack.database.db('webhook_deliveries').insert({
        id,
        subscription_id: windowHookId,
        event_id: eventId,
        event: 'window.skipped',
        payload: JSON.stringify(body),
        created_at: new Date(Date.now() - 120_000),
      });
      const swept = await sweep(1);
      assert.ok(swept.restarted >= 1, JSON.stringify(swept));
      const got = await stack.waitFor(
        'the swept delivery',
        () => Promise.resolve(received.find((r) => r.answered === 204 && r.headers['x-patchnanny-delivery'] === id)),
        30_000,
      );
      assert.equal(JSON.parse(got.body).id, eventId);
      const row = await stack.database.db('webhook_deliveries').where({ id }).first();
      assert.equal(row.status, 'delivered');
      assert.equal(row.attempts, 3);
    });
  });
});
