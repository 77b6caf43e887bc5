import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { fixture } from '../support/fixture';
import { Stack } from '../support/stack';

const SECURITY = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security true DSA-5999-1:Important'];
const BUGFIX = ['curl amd64 7.88.1-10 7.88.1-11 bookworm false'];

/**
 * Issue 12 through the whole spine: labels from PATCHNANNY_LABELS, an admin's edit and selector,
 * and a patch baseline that approves a plan of old security fixes while another plan waits for a
 * person. Real Temporal, real PostgreSQL, real agents running the fixture patch script.
 */
describe('labels and patch baselines', { concurrency: false }, () => {
  const stack = new Stack();
  before(() => stack.start());
  after(() => stack.stop());

  it('labels from PATCHNANNY_LABELS arrive at registration; admins edit them; a selector filters', async () => {
    const web = await stack.startAgent('lbl-web', [], undefined, { PATCHNANNY_LABELS: 'env=prod,role=web' });
    const db = await stack.startAgent('lbl-db', [], undefined, { PATCHNANNY_LABELS: 'env=prod,role=db' });
    const got = await stack.http('GET', `/v1/agents/${web.id}`);
    assert.deepEqual(got.body.agent.labels, { env: 'prod', role: 'web' });
    const listed = await stack.http('GET', '/v1/agents?selector=role%3Dweb');
    assert.equal(listed.status, 200, JSON.stringify(listed.body));
    assert.deepEqual(
      listed.body.agents.map((a: any) => a.id),
      [web.id],
    );
    const edited = await stack.http('PUT', `/v1/agents/${db.id}/labels`, { body: { labels: { role: 'web' } } });
    assert.equal(edited.status, 200, JSON.stringify(edited.body));
    const again = await stack.http('GET', '/v1/agents?selector=role%3Dweb');
    assert.deepEqual(again.body.agents.map((a: any) => a.id).sort(), [db.id, web.id].sort());
    const audit = await stack.database.db('audit_log').where({ kind: 'agent.labels-set', subject: db.id });
    assert.equal(audit.length, 1);
  });

  it('a bad selector or label is refused with a 400 naming it', async () => {
    const r = await stack.http('GET', '/v1/agents?selector=role%3Dwe%20b');
    assert.equal(r.status, 400);
    assert.match(JSON.stringify(r.body), /selector/);
    const agent = (await stack.http('GET', '/v1/agents')).body.agents[0];
    const bad = await stack.http('PUT', `/v1/agents/${agent.id}/labels`, { body: { labels: { 'BAD KEY': 'x' } } });
    assert.equal(bad.status, 400);
    assert.match(JSON.stringify(bad.body), /labels/);
  });

  it('a baseline approves a plan of security fixes first seen long enough ago, and records the rule', async () => {
    const agent = await stack.startAgent('bl-sec', SECURITY, undefined, { PATCHNANNY_LABELS: 'role=edge' });
    // A first plan makes patchnanny see the candidate; the test then makes that 10 days ago.
    const dry = await stack.http('POST', '/v1/runs', {
      body: { agentId: agent.id, mode: 'dry-run', approval: 'auto' },
    });
    assert.equal((await stack.waitForOutcome(dry.body.run.id)).outcome, 'completed');
    const n = await stack.database
      .db('package_first_seen')
      .where({ name: 'openssl', candidate: '3.0.16-1' })
      .update({ first_seen_at: new Date(Date.now() - 10 * 86_400_000) });
    assert.equal(n, 1);
    const created = await stack.http('POST', '/v1/baselines', {
      body: { name: 'edge-security', selector: 'role=edge', rules: { securityAfterDays: 7 } },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const started = await stack.http('POST', '/v1/runs', {
      body: { agentId: agent.id, mode: 'apply', approval: 'required' },
    });
    assert.equal(started.status, 202, JSON.stringify(started.body));
    const run = await stack.waitForOutcome(started.body.run.id);
    assert.equal(run.outcome, 'completed', run.failureReason);
    assert.equal(run.approvedBy, 'baseline:edge-security');
    assert.equal(run.approvedByBaseline.baseline, 'edge-security');
    assert.equal(run.approvedByBaseline.packages[0].rule, 'securityAfterDays');
    assert.ok(fixture(agent).applied());
    const event = run.events.find((e: any) => e.kind === 'approved');
    assert.equal(event.detail.baseline, 'edge-security');
  });

  it('a plan with a package no rule covers waits for a person', async () => {
    const agent = await stack.startAgent('bl-bug', [...SECURITY, ...BUGFIX], undefined, {
      PATCHNANNY_LABELS: 'role=edge',
    });
    const started = await stack.http('POST', '/v1/runs', {
      body: { agentId: agent.id, mode: 'apply', approval: 'required' },
    });
    const run = await stack.waitForRun(started.body.run.id, (r) => r.phase === 'awaiting-approval');
    assert.equal(run.approvedBy, null);
    assert.equal(fixture(agent).applied(), false);
    const bad = await stack.http('POST', '/v1/baselines', {
      body: { name: 'x', selector: '', rules: { patterns: ['curl'] } },
    });
    assert.equal(bad.status, 400);
    assert.match(JSON.stringify(bad.body), /selector/);
  });
});
