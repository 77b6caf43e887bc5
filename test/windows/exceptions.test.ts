import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Stack } from '../support/stack';

const PLAN = [
  'openssl amd64 3.0.15-1 3.0.16-1 bookworm-security',
  'linux-image-amd64 amd64 6.1.0-25 6.1.0-26 bookworm',
  'curl amd64 7.88.1-10 7.88.1-11 bookworm',
];

describe('package exceptions: never touched by a run', { concurrency: true }, () => {
  const stack = new Stack();
  before(() => stack.start());
  after(() => stack.stop());

  const addException = async (agentId: string, body: Record<string, unknown>) => {
    const r = await stack.http('POST', `/v1/agents/${agentId}/exceptions`, { body });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.exception;
  };
  const dryRun = async (agentId: string) => {
    const r = await stack.http('POST', '/v1/runs', { body: { agentId, mode: 'dry-run' } });
    assert.equal(r.status, 202);
    return stack.waitForOutcome(r.body.run.id);
  };

  it('an exception reaches the script as --exclude, is recorded on the run and shows as held', async () => {
    const agent = await stack.startAgent('exc-host', PLAN);
    const exc = await addException(agent.id, {
      package: 'linux-image-*',
      reason: 'kernel upgrades need a maintenance ticket',
    });
    assert.equal(exc.createdBy, 'alice');
    assert.equal(exc.active, true);
    const run = await dryRun(agent.id);
    assert.deepEqual(run.exclusions, ['linux-image-*']);
    assert.deepEqual(run.output[0].argv, ['--dry-run', '--exclude', 'linux-image-*']);
    const calls = readFileSync(path.join(agent.fixtureDir, 'calls.log'), 'utf8');
    assert.equal(calls, 'dry-run --exclude linux-image-*\n', 'the argv the agent really ran');
    assert.deepEqual(
      run.plan.map((p: any) => p.name),
      ['curl', 'openssl'],
    );
    assert.deepEqual(
      run.held.map((p: any) => [p.name, p.candidate]),
      [['linux-image-amd64', '6.1.0-26']],
    );
  });

  it('an exception stops applying on its own once its expiry has passed', async () => {
    const agent = await stack.startAgent('expiry-host', PLAN);
    const exc = await addException(agent.id, {
      package: 'curl',
      reason: 'pinned for a week',
      expiresAt: new Date(Date.now() + 3600_000).toISOString(),
    });
    const first = await dryRun(agent.id);
    assert.deepEqual(first.exclusions, ['curl']);
    // Let the expiry pass without waiting on a clock: move it to a second ago, as time would.
    await stack.database
      .db('package_exceptions')
      .where({ id: exc.id })
      .update({ expires_at: new Date(Date.now() - 1000) });
    const second = await dryRun(agent.id);
    assert.deepEqual(second.exclusions, []);
    assert.deepEqual(second.output[0].argv, ['--dry-run']);
    assert.ok(second.plan.some((p: any) => p.name === 'curl'));
    const listed = await stack.http('GET', `/v1/agents/${agent.id}/exceptions`);
    assert.equal(listed.body.exceptions[0].active, false, 'an expired exception is listed as inactive');
  });

  it("one agent's exceptions never leak into another agent's runs", async () => {
    const a = await stack.startAgent('leak-a', PLAN);
    const b = await stack.startAgent('leak-b', PLAN);
    await addException(a.id, { package: 'openssl', reason: 'FIPS build' });
    const runB = await dryRun(b.id);
    assert.deepEqual(runB.exclusions, []);
    assert.deepEqual(runB.held, []);
    const runA = await dryRun(a.id);
    assert.deepEqual(runA.exclusions, ['openssl']);
  });

  it('an exception can be changed and deleted, and a deleted one no longer applies', async () => {
    const agent = await stack.startAgent('edit-host', PLAN);
    const exc = await addException(agent.id, { package: 'openssl', reason: 'vendor build' });
    const patched = await stack.http('PATCH', `/v1/agents/${agent.id}/exceptions/${exc.id}`, {
      body: { reason: 'vendor build, see ticket 42' },
    });
    assert.equal(patched.status, 200);
    assert.equal(patched.body.exception.reason, 'vendor build, see ticket 42');
    const dup = await stack.http('POST', `/v1/agents/${agent.id}/exceptions`, {
      body: { package: 'openssl', reason: 'again' },
    });
    assert.equal(dup.status, 409);
    assert.equal((await stack.http('DELETE', `/v1/agents/${agent.id}/exceptions/${exc.id}`)).status, 204);
    assert.equal((await stack.http('DELETE', `/v1/agents/${agent.id}/exceptions/${exc.id}`)).status, 404);
    const run = await dryRun(agent.id);
    assert.deepEqual(run.exclusions, []);
  });

  const bad: [string, string, Record<string, unknown>, string][] = [
    ['an unknown agent', 'nobody-here', { package: 'curl', reason: 'x' }, 'agentId'],
    ['a name with shell characters', 'AGENT', { package: 'curl;reboot', reason: 'x' }, 'package'],
    ['a name that is not legal for apt', 'AGENT', { package: 'Curl_Upper', reason: 'x' }, 'package'],
    ['a missing reason', 'AGENT', { package: 'curl' }, 'reason'],
    [
      'an expiry in the past',
      'AGENT',
      { package: 'curl', reason: 'x', expiresAt: '2020-01-01T00:00:00Z' },
      'expiresAt',
    ],
  ];
  for (const [what, agentId, body, field] of bad) {
    it(`an exception with ${what} is a 400 naming ${field}, and nothing is created`, async () => {
      const id =
        agentId === 'AGENT'
          ? await stack.registerOffline(`bad-${field}-${Math.random().toString(36).slice(2, 8)}`)
          : agentId;
      const r = await stack.http('POST', `/v1/agents/${id}/exceptions`, { body });
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal(r.body.error.field, field);
      const rows = await stack.database.db('package_exceptions').where({ agent_id: id });
      assert.deepEqual(rows, []);
    });
  }
});
