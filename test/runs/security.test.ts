import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { planHash } from '../../contract/plan-hash';
import { fixture } from '../support/fixture';
import { Stack } from '../support/stack';

/** openssl is a security fix naming its advisory, curl a bug fix, zlib from a manager without advisory data. */
const PLAN = [
  'openssl amd64 3.0.15-1 3.0.16-1 bookworm-security true DSA-5999-1:Important',
  'curl amd64 7.88.1-10 7.88.1-11 bookworm false',
  'zlib1g amd64 1:1.2.13-1 1:1.2.13-2 bookworm',
];

/**
 * Issue 16 through the whole spine: the security classification the script reports is stored per
 * package and returned by the API, the plan hash covers it, and a security-only run hands
 * `--security-only` to the script in both steps and shows only what it will do. Real Temporal,
 * real PostgreSQL, a real agent running the fixture patch script.
 */
describe('security classification and security-only runs through the API', { concurrency: true }, () => {
  const stack = new Stack();
  before(() => stack.start());
  after(() => stack.stop());

  const startRun = async (body: Record<string, unknown>) => {
    const r = await stack.http('POST', '/v1/runs', { body: { mode: 'dry-run', approval: 'auto', ...body } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return r.body.run as { id: string; securityOnly: boolean };
  };
  const row = (p: any) => [p.name, p.security, p.advisories];

  it('a plan stores and returns each package’s classification, and unknown stays absent, not false', async () => {
    const agent = await stack.startAgent('sec-classify', PLAN);
    const started = await startRun({ agentId: agent.id });
    assert.equal(started.securityOnly, false);
    const run = await stack.waitForOutcome(started.id);
    assert.equal(run.outcome, 'completed', run.failureReason);
    assert.deepEqual(run.plan.map(row), [
      ['curl', false, []],
      ['openssl', true, [{ id: 'DSA-5999-1', severity: 'Important' }]],
      ['zlib1g', undefined, undefined],
    ]);
    assert.deepEqual(fixture(agent).calls(), ['dry-run']);
    // The stored plan's hash is the hash of what the script reported, classification included.
    assert.equal(run.planHash, planHash(run.plan));
  });

  it('a security-only run passes --security-only to both steps and applies only the security fixes', async () => {
    const agent = await stack.startAgent('sec-only', PLAN);
    const started = await startRun({ agentId: agent.id, mode: 'apply', securityOnly: true });
    assert.equal(started.securityOnly, true);
    const run = await stack.waitForOutcome(started.id);
    assert.equal(run.outcome, 'completed', run.failureReason);
    assert.equal(run.securityOnly, true);
    assert.deepEqual(run.plan.map(row), [['openssl', true, [{ id: 'DSA-5999-1', severity: 'Important' }]]]);
    assert.deepEqual(
      run.changed.map((c: any) => c.name),
      ['openssl'],
    );
    assert.deepEqual(fixture(agent).calls(), ['dry-run --security-only', 'apply --security-only']);
    assert.deepEqual(
      run.output.map((o: any) => o.argv),
      [
        ['--dry-run', '--security-only'],
        ['--apply', '--security-only'],
      ],
    );
  });

  it('securityOnly that is not a boolean is refused with a clear error and starts nothing', async () => {
    const agent = await stack.startAgent('sec-bad', PLAN);
    const r = await stack.http('POST', '/v1/runs', {
      body: { agentId: agent.id, mode: 'apply', securityOnly: 'yes' },
    });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.match(JSON.stringify(r.body), /securityOnly/);
    const listed = await stack.http('GET', `/v1/runs?agentId=${agent.id}`);
    assert.deepEqual(listed.body.runs, []);
    assert.deepEqual(fixture(agent).calls(), []);
  });
});

describe('the plan hash and the security classification', () => {
  const base = { name: 'openssl', arch: 'amd64', current: '1', candidate: '2', repo: 'r', action: 'upgrade' } as const;

  it('a plan without classification hashes exactly as before issue 16 (stored plans keep their hash)', () => {
    // The pre-issue-16 hash: JSON of [name, arch, current, candidate, action] rows.
    const before = planHash([base]);
    assert.equal(planHash([{ ...base, security: null, advisories: [] }]), before);
    assert.equal(planHash([{ ...base, security: null }]), before);
  });

  it('a candidate that stops or starts being a security fix, or names another advisory, is a different plan', () => {
    const sec = planHash([{ ...base, security: true, advisories: [{ id: 'A-1', severity: 'Important' }] }]);
    assert.notEqual(planHash([{ ...base, security: false, advisories: [] }]), planHash([base]));
    assert.notEqual(planHash([{ ...base, security: false, advisories: [] }]), sec);
    assert.notEqual(planHash([{ ...base, security: true, advisories: [{ id: 'A-2', severity: 'Important' }] }]), sec);
    assert.notEqual(planHash([{ ...base, security: true, advisories: [{ id: 'A-1', severity: 'Low' }] }]), sec);
    // Order of advisories is not a change.
    const two = [
      { id: 'A-1', severity: 'Important' },
      { id: 'B-2', severity: null },
    ];
    assert.equal(
      planHash([{ ...base, security: true, advisories: two }]),
      planHash([{ ...base, security: true, advisories: [...two].reverse() }]),
    );
  });
});
