/**
 * Plan-group approval of rollouts (issue 12, docs/rollouts.md "Approval scope") on a real stack:
 * real agents with fixture scripts, real Temporal and PostgreSQL, the project's CLI. One signed
 * approval of the canary's plan covers every host of the rollout that plans exactly the same;
 * a host with another plan waits for a person; a host whose plan changed before apply refuses.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { fixture } from '../support/fixture';
import { DIST, replayHistory, Stack, type TestAgent } from '../support/stack';
import { cliSignal } from '../support/temporal-cli';

const execFileAsync = promisify(execFile);
const CLI = path.join(DIST, 'cli/patchnanny.js');
const PLAN_A = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security'];
const PLAN_B = ['curl amd64 7.88.1-10 7.88.1-11 bookworm'];
const ENDED = ['halted', 'aborted', 'completed'];

describe('rollouts: one plan-group approval covers the same plan on every host', () => {
  const stack = new Stack({ approvalMs: 120_000, agentPickupMs: 30_000, scriptMs: 60_000 });
  const same: TestAgent[] = [];
  let other: TestAgent;
  let bobToken = '';
  let bobKeyFile = '';

  before(async () => {
    await stack.start();
    for (const name of ['pg-a1', 'pg-a2', 'pg-a3', 'pg-a4']) same.push(await stack.startAgent(name, PLAN_A));
    other = await stack.startAgent('pg-b1', PLAN_B);
    await stack.database
      .db('agents')
      .whereIn(
        'id',
        [...same, other].map((a) => a.id),
      )
      .update({ labels: { role: 'web' } });
    bobToken = (await stack.http('POST', '/v1/users/bob/tokens', { body: { note: 'test' } })).body.token;
    // bob's CLI key, registered before any run starts (runs pin the keys valid when they start).
    bobKeyFile = path.join(stack.tmpDir(), 'bob.key');
    const made = JSON.parse((await execFileAsync(process.execPath, [CLI, 'keygen', '--out', bobKeyFile])).stdout);
    const reg = await stack.http('POST', '/v1/keys', { body: { owner: 'bob', publicKey: made.publicKey } });
    assert.equal(reg.status, 201, JSON.stringify(reg.body));
  });
  after(() => stack.stop());

  const show = async (id: string) => (await stack.http('GET', `/v1/rollouts/${id}`)).body.rollout;
  const host = (r: any, a: TestAgent) => r.hosts.find((h: any) => h.agentId === a.id);

  it('the canary approved once: same-plan hosts apply without a person, another plan waits, drift refuses', async () => {
    const started = await stack.http('POST', '/v1/rollouts', {
      body: {
        targets: { selector: 'role=web' },
        mode: 'apply',
        approval: 'required',
        approvalScope: 'plan-group',
        canary: { count: 1 },
        maxConcurrency: 5,
        maxFailures: { count: 1 },
      },
    });
    assert.equal(started.status, 201, JSON.stringify(started.body));
    const r = started.body.rollout;
    assert.equal(r.approvalScope, 'plan-group');
    assert.equal(r.hosts[0].agentId, same[0].id, 'pg-a1 is the canary');

    const canary = await stack.waitFor(
      'the canary to wait for approval',
      async () => {
        const h = host(await show(r.id), same[0]);
        return h.phase === 'awaiting-approval' && h;
      },
      60_000,
    );
    const planHash: string = canary.planHash;
    const url = `/v1/rollouts/${r.id}/approve`;

    // The rollout's creator (alice) may not give its group approval.
    const byCreator = stack.signApproval(r.id, planHash, 'alice');
    const refusedCreator = await stack.http('POST', url, {
      body: { planHash, at: byCreator.at, keyId: byCreator.keyId, signature: byCreator.signature },
    });
    assert.equal(refusedCreator.status, 403, JSON.stringify(refusedCreator.body));
    assert.match(refusedCreator.body.error.message, /four-eyes/);
    // A statement signed for the canary's run, not for the rollout, covers nothing.
    const forRun = stack.signApproval(canary.runId, planHash, 'bob');
    const wrongScope = await stack.http('POST', url, {
      token: bobToken,
      body: { planHash, at: forRun.at, keyId: forRun.keyId, signature: forRun.signature },
    });
    assert.equal(wrongScope.status, 403, JSON.stringify(wrongScope.body));
    assert.match(wrongScope.body.error.message, /invalid signature/);
    // A plan no host of the rollout has made cannot be approved for it.
    const nobody = 'f'.repeat(64);
    const unknownPlan = stack.signApproval(r.id, nobody, 'bob');
    const refusedPlan = await stack.http('POST', url, {
      token: bobToken,
      body: { planHash: nobody, at: unknownPlan.at, keyId: unknownPlan.keyId, signature: unknownPlan.signature },
    });
    assert.equal(refusedPlan.status, 409, JSON.stringify(refusedPlan.body));
    assert.equal((await stack.database.db('rollout_plan_approvals').where({ rollout_id: r.id })).length, 0);

    // The canary's packages change before the approval reaches it: its re-plan must refuse.
    fixture(same[0]).set('plan.txt', [...PLAN_A, ...PLAN_B].join('\n'));
    const cli = await execFileAsync(process.execPath, [
      CLI,
      'rollout',
      'approve',
      r.id,
      '--key',
      bobKeyFile,
      '--by',
      'bob',
      '--yes',
      '--api-url',
      stack.baseUrl,
      '--token',
      bobToken,
    ]);
    assert.match(cli.stdout, new RegExp(`approved plan ${planHash} for ${r.id} as bob`));
    assert.match(cli.stdout, new RegExp(`approved ${canary.runId}`));

    const done = await stack.waitFor(
      'the same-plan hosts to finish and pg-b1 to wait',
      async () => {
        const x = await show(r.id);
        const rest = same.slice(1).map((a) => host(x, a));
        const b = host(x, other);
        return host(x, same[0]).outcome && rest.every((h: any) => h.outcome) && b.phase === 'awaiting-approval' && x;
      },
      120_000,
    );
    assert.equal(host(done, same[0]).outcome, 'plan-drift', 'the canary re-planned something else and refused');
    for (const a of same.slice(1)) {
      const h = host(done, a);
      assert.equal(h.outcome, 'completed', `${a.id} applied under the group approval`);
      assert.equal(h.planHash, planHash);
      assert.ok(fixture(a).applied(), `${a.id} applied`);
      const run = (await stack.http('GET', `/v1/runs/${h.runId}`)).body.run;
      assert.equal(run.approvedBy, 'bob');
      // The statement kept on the run is the one bob signed, over the rollout: checkable from the trail.
      const approved = await stack.database.db('audit_log').where({ subject: h.runId, kind: 'run.approved' }).first();
      assert.equal(approved.detail.approval.runId, r.id);
      assert.equal(approved.detail.approval.planHash, planHash);
      // Approved by the record, not by a decision sent to it: nothing was refused on the way.
      assert.equal(run.events.filter((e: any) => e.kind === 'ignored-approve').length, 0);
    }
    // pg-b1 planned something else: the group approval does not cover it, a person decides.
    const b = host(done, other);
    assert.notEqual(b.planHash, planHash);
    assert.equal(fixture(other).applied(), false);
    // Not even when bob's group statement is signalled to it straight through Temporal.
    const statement = stack.signApproval(r.id, planHash, 'bob');
    await cliSignal(b.runId, 'approve', statement);
    const refused = await stack.waitForRun(b.runId, (x) => x.events.some((e: any) => e.kind === 'ignored-approve'));
    assert.match(refused.events.find((e: any) => e.kind === 'ignored-approve').detail.reason, /stale plan hash/);
    assert.equal(refused.phase, 'awaiting-approval');
    // bob approves pg-b1's own plan as any run's; the rollout then ends, one failure within budget.
    const own = stack.signApproval(b.runId, b.planHash, 'bob');
    const approvedB = await stack.http('POST', `/v1/runs/${b.runId}/approve`, {
      token: bobToken,
      body: { planHash: b.planHash, at: own.at, keyId: own.keyId, signature: own.signature },
    });
    assert.equal(approvedB.status, 200, JSON.stringify(approvedB.body));
    const end = await stack.waitFor(
      'the rollout to end',
      async () => {
        const x = await show(r.id);
        return ENDED.includes(x.state) && x;
      },
      60_000,
    );
    assert.equal(end.state, 'completed', JSON.stringify(end));
    assert.deepEqual(end.budget, { allowed: 1, spent: 1, left: 0 });
    assert.deepEqual(
      end.planApprovals.map((a: any) => [a.planHash, a.by]),
      [[planHash, 'bob']],
    );
    const audit = await stack.database.db('audit_log').where({ subject: r.id, kind: 'rollout.plan-approved' });
    assert.equal(audit.length, 1);
    assert.equal(audit[0].actor, 'bob');
    // Today's code replays a covered host's history and the rollout's.
    await replayHistory(stack.temporal, host(end, same[1]).runId);
    await replayHistory(stack.temporal, r.id);
  });

  it('a per-run rollout takes no group approval, and a plan-group rollout needs approval required', async () => {
    for (const a of [...same, other]) fixture(a).set('plan.txt', PLAN_A.join('\n'));
    const perRun = await stack.http('POST', '/v1/rollouts', {
      body: { targets: { agentIds: [same[3].id] }, mode: 'apply', approval: 'required' },
    });
    assert.equal(perRun.status, 201, JSON.stringify(perRun.body));
    const id = perRun.body.rollout.id;
    const s = stack.signApproval(id, 'a'.repeat(64), 'bob');
    const refused = await stack.http('POST', `/v1/rollouts/${id}/approve`, {
      token: bobToken,
      body: { planHash: s.planHash, at: s.at, keyId: s.keyId, signature: s.signature },
    });
    assert.equal(refused.status, 409, JSON.stringify(refused.body));
    assert.match(refused.body.error.message, /per-run/);
    assert.equal((await stack.http('POST', `/v1/rollouts/${id}/abort`)).status, 202);

    const auto = await stack.http('POST', '/v1/rollouts', {
      body: { targets: { agentIds: [same[3].id] }, mode: 'apply', approval: 'auto', approvalScope: 'plan-group' },
    });
    assert.equal(auto.status, 400);
    assert.match(auto.body.error.message, /approvalScope/);
  });
});
