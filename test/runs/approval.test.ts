import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PatchHost, PatchOutcome, PatchPhase } from '../../workflows/search-attributes';
import { Stack, type TestAgent } from '../support/stack';
import { fixture } from '../support/fixture';
import { cliSignal } from '../support/temporal-cli';

const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security', 'curl amd64 7.88.1-10 7.88.1-11 bookworm'];

describe('a patch run through the HTTP API, a real Temporal server and a real agent', { concurrency: true }, () => {
  const stack = new Stack();
  before(() => stack.start());
  after(() => stack.stop());

  const startRun = async (agentId: string, body: Record<string, unknown> = {}) => {
    const r = await stack.http('POST', '/v1/runs', { body: { agentId, mode: 'apply', approval: 'required', ...body } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    assert.match(r.body.run.id, new RegExp(`^patch-run\\.${agentId}\\.[0-9A-Z]{26}$`));
    return r.body.run.id as string;
  };
  const awaitingApproval = (id: string) =>
    stack.waitForRun(id, (r) => r.phase === 'awaiting-approval' || r.outcome !== null);
  const calls = (agent: TestAgent) => fixture(agent).calls();
  const applied = (agent: TestAgent) => fixture(agent).applied();

  it('a dry-run stores the plan per package and returns it, without applying anything', async () => {
    const agent = await stack.startAgent('dry-host', PLAN);
    const id = await startRun(agent.id, { mode: 'dry-run' });
    const run = await stack.waitForOutcome(id);
    assert.equal(run.outcome, 'completed');
    assert.equal(run.phase, 'done');
    assert.deepEqual(
      run.plan.map((p: any) => [p.name, p.current, p.candidate, p.repo]),
      [
        ['curl', '7.88.1-10', '7.88.1-11', 'bookworm'],
        ['openssl', '3.0.15-1', '3.0.16-1', 'bookworm-security'],
      ],
    );
    assert.match(run.planHash, /^[0-9a-f]{64}$/);
    assert.equal(run.output[0].step, 'plan');
    assert.deepEqual(run.output[0].argv, ['--dry-run']);
    assert.match(run.output[0].stderr, /fixture: dry-run with 2 packages/);
    assert.deepEqual(calls(agent), ['dry-run']);
    assert.equal(applied(agent), false);
    const listed = await stack.http('GET', `/v1/runs?agentId=${agent.id}`);
    assert.deepEqual(
      listed.body.runs.map((r: any) => r.id),
      [id],
    );
  });

  it('approving the plan applies it and stores exit code, output and changed packages', async () => {
    const agent = await stack.startAgent('approve-host', PLAN);
    fixture(agent).set('reboot-required', 'fixture kernel');
    const id = await startRun(agent.id);
    const waiting = await awaitingApproval(id);
    assert.equal(waiting.phase, 'awaiting-approval');
    assert.equal(applied(agent), false, 'nothing applied before approval');
    const r = await stack.approve(id, waiting.planHash);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const run = await stack.waitForOutcome(id);
    assert.equal(run.outcome, 'completed', run.failureReason);
    assert.equal(run.exitCode, 0);
    assert.equal(run.approvedBy, 'alice');
    assert.equal(run.rebootRequired, true);
    assert.equal(run.rebootReason, 'fixture kernel');
    assert.deepEqual(
      run.changed.map((c: any) => [c.name, c.from, c.to]),
      [
        ['curl', '7.88.1-10', '7.88.1-11'],
        ['openssl', '3.0.15-1', '3.0.16-1'],
      ],
    );
    assert.deepEqual(
      run.output.map((o: any) => o.step),
      ['plan', 'apply'],
    );
    assert.match(run.output[1].stderr, /fixture: apply/);
    assert.ok(applied(agent));
    // plan, re-plan before apply, apply
    assert.deepEqual(calls(agent), ['dry-run', 'dry-run', 'apply']);
  });

  it('an apply that needs no reboot records rebootRequired false', async () => {
    const agent = await stack.startAgent('no-reboot-host', PLAN);
    const id = await startRun(agent.id, { approval: 'auto' });
    const run = await stack.waitForOutcome(id);
    assert.equal(run.outcome, 'completed', run.failureReason);
    assert.ok(applied(agent));
    assert.equal(run.rebootRequired, false);
    assert.equal(run.rebootReason, null);
  });

  it('rejecting the plan ends the run as rejected and apply never runs', async () => {
    const agent = await stack.startAgent('reject-host', PLAN);
    const id = await startRun(agent.id);
    await awaitingApproval(id);
    const r = await stack.http('POST', `/v1/runs/${id}/reject`, { body: { reason: 'not during the sale' } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const run = await stack.waitForOutcome(id);
    assert.equal(run.outcome, 'rejected');
    assert.equal(run.rejectedBy, 'alice');
    assert.equal(run.rejectReason, 'not during the sale');
    assert.equal(applied(agent), false);
    assert.deepEqual(calls(agent), ['dry-run']);
    const late = await stack.approve(id, run.planHash);
    assert.equal(late.status, 409, 'a finished run cannot be approved');
  });

  it('a run nobody decides on expires after its approval timeout', async () => {
    const agent = await stack.startAgent('expire-host', PLAN);
    const id = await startRun(agent.id, { timeouts: { approvalMs: 1500 } });
    const run = await stack.waitForOutcome(id);
    assert.equal(run.outcome, 'expired');
    assert.equal(applied(agent), false);
  });

  it('an approval with a stale plan hash is refused with 409 and the run keeps waiting', async () => {
    const agent = await stack.startAgent('stale-host', PLAN);
    const id = await startRun(agent.id);
    const waiting = await awaitingApproval(id);
    const stale = 'f'.repeat(64);
    const r = await stack.approve(id, stale);
    assert.equal(r.status, 409);
    assert.equal(r.body.error.code, 'conflict');
    assert.match(r.body.error.message, /not the current plan/);
    const still = await stack.http('GET', `/v1/runs/${id}`);
    assert.equal(still.body.run.phase, 'awaiting-approval');
    assert.equal(applied(agent), false);
    const ok = await stack.approve(id, waiting.planHash);
    assert.equal(ok.status, 200);
    assert.equal((await stack.waitForOutcome(id)).outcome, 'completed');
  });

  it('a plan that changes between approval and apply ends as plan-drift without applying', async () => {
    const agent = await stack.startAgent('drift-host', PLAN);
    const id = await startRun(agent.id);
    const waiting = await awaitingApproval(id);
    // a new update lands in the mirror after the admin looked at the plan
    writeFileSync(
      path.join(agent.fixtureDir, 'plan.txt'),
      [...PLAN, 'bash amd64 5.2.15-2 5.2.15-3 bookworm'].join('\n') + '\n',
    );
    const r = await stack.approve(id, waiting.planHash);
    assert.equal(r.status, 200);
    const run = await stack.waitForOutcome(id);
    assert.equal(run.outcome, 'plan-drift');
    assert.match(run.failureReason, /re-approval needed/);
    assert.equal(applied(agent), false);
    assert.deepEqual(calls(agent), ['dry-run', 'dry-run']);
  });

  it('approval by signal, as `temporal workflow signal` sends it, applies the plan; a stale signal is recorded and ignored', async () => {
    const agent = await stack.startAgent('signal-host', PLAN);
    const id = await startRun(agent.id);
    const waiting = await awaitingApproval(id);
    const handle = stack.temporal.workflow.getHandle(id);
    // Sent with the real Temporal CLI, as an admin would.
    await cliSignal(id, 'approve', stack.signApproval(id, '0'.repeat(64), 'bob'));
    await cliSignal(id, 'approve', { by: 'bob' });
    const ignored = await stack.waitForRun(
      id,
      (r) => r.events.filter((e: any) => e.kind === 'ignored-approve').length === 2,
    );
    assert.equal(ignored.phase, 'awaiting-approval');
    assert.match(ignored.events[0].detail.reason, /stale plan hash/);
    assert.match(ignored.events[1].detail.reason, /malformed/);
    assert.equal(applied(agent), false);

    await cliSignal(id, 'approve', stack.signApproval(id, waiting.planHash, 'bob'));
    const run = await stack.waitForOutcome(id);
    assert.equal(run.outcome, 'completed', run.failureReason);
    assert.equal(run.approvedBy, 'bob');
    assert.ok(applied(agent));
    const status = await handle.query('status');
    assert.equal((status as any).ignoredDecisions.length, 2);
  });

  it('auto approval plans and applies without waiting for anyone', async () => {
    const agent = await stack.startAgent('auto-host', PLAN);
    const id = await startRun(agent.id, { approval: 'auto' });
    const run = await stack.waitForOutcome(id);
    assert.equal(run.outcome, 'completed', run.failureReason);
    assert.equal(run.approvedBy, null);
    assert.deepEqual(calls(agent), ['dry-run', 'apply']);
  });

  it('a failing apply ends the run as failed with the manager failure recorded', async () => {
    const agent = await stack.startAgent('fail-host', PLAN);
    writeFileSync(path.join(agent.fixtureDir, 'fail-apply'), '100');
    const id = await startRun(agent.id, { approval: 'auto' });
    const run = await stack.waitForOutcome(id);
    assert.equal(run.outcome, 'failed');
    assert.equal(run.exitCode, 6);
    assert.match(run.failureReason, /apply exited 6 \(transaction: fixture failure\)/);
    assert.deepEqual(
      run.output.map((o: any) => o.step),
      ['plan', 'apply'],
    );
    assert.equal(applied(agent), false);
  });

  it('the live status query, the search attributes and the run list agree on the outcome', async () => {
    const agent = await stack.startAgent('attr-host', PLAN);
    const id = await startRun(agent.id, { mode: 'dry-run' });
    await stack.waitForOutcome(id);
    const handle = stack.temporal.workflow.getHandle(id);
    const status: any = await handle.query('status');
    assert.equal(status.outcome, 'completed');
    assert.equal(status.plan.length, 2);
    const desc = await handle.describe();
    assert.equal(desc.typedSearchAttributes.get(PatchHost), 'attr-host');
    assert.equal(desc.typedSearchAttributes.get(PatchOutcome), 'completed');
    assert.equal(desc.typedSearchAttributes.get(PatchPhase), 'done');
    const list = await stack.http('GET', `/v1/runs?outcome=completed&agentId=${agent.id}`);
    assert.deepEqual(
      list.body.runs.map((r: any) => r.id),
      [id],
    );
  });
});
