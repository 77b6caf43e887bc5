import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { statusQuery } from '../../workflows/messages';
import { PatchOutcome } from '../../workflows/search-attributes';
import { fixture } from '../support/fixture';
import { Stack, type TestAgent } from '../support/stack';
import { cliSignal } from '../support/temporal-cli';
import { until } from '../support/wait';

const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security'];
/** A script that would outlast every test: only a cancellation or a signal ends it. */
const FOREVER = 300;

/**
 * Every way a run can end that the happy paths in approval.test.ts do not reach: retries,
 * failures, cancellation in each phase, an empty plan, and runs inside maintenance windows.
 * Real Temporal, real PostgreSQL, real agent processes running the fixture patch script.
 */
describe('how a patch run ends, in every phase', { concurrency: true }, () => {
  const stack = new Stack();
  before(() => stack.start());
  after(() => stack.stop());

  const startRun = async (agentId: string, body: Record<string, unknown> = {}) => {
    const r = await stack.http('POST', '/v1/runs', { body: { agentId, mode: 'apply', approval: 'auto', ...body } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return r.body.run.id as string;
  };
  const cancel = async (id: string) => assert.equal((await stack.http('POST', `/v1/runs/${id}/cancel`)).status, 202);

  /** What Temporal itself says about a finished run: the live status and the search attribute. */
  const temporalOutcome = async (id: string) => {
    const handle = stack.temporal.workflow.getHandle(id);
    const status = await handle.query(statusQuery);
    const desc = await handle.describe();
    return { status: status.outcome, attribute: desc.typedSearchAttributes.get(PatchOutcome) };
  };

  /** Each scriptExecute the run's history shows started: its attempt and the failure that led to it. */
  const scriptAttempts = async (id: string) => {
    const events = (await stack.temporal.workflow.getHandle(id).fetchHistory()).events ?? [];
    const types = new Map(
      events
        .filter((e) => e.activityTaskScheduledEventAttributes)
        .map((e) => [Number(e.eventId), e.activityTaskScheduledEventAttributes!.activityType?.name]),
    );
    return events
      .map((e) => e.activityTaskStartedEventAttributes)
      .filter((a) => a && types.get(Number(a.scheduledEventId)) === 'scriptExecute')
      .map((a) => ({ attempt: a!.attempt, after: a!.lastFailure?.applicationFailureInfo?.type ?? null }));
  };

  const transient = [
    { kind: 'lock', exit: 4, type: 'package-manager-locked', what: 'a held package-manager lock' },
    { kind: 'refresh', exit: 5, type: 'metadata-refresh-failed', what: 'a failed metadata refresh' },
  ] as const;
  for (const t of transient) {
    it(`a dry-run that exits ${t.exit} (${t.what}) is retried by Temporal and the run completes with the plan`, async () => {
      const agent = await stack.startAgent(`retry-${t.kind}`, PLAN);
      fixture(agent).set(`${t.kind}-dry-run`, 1);
      const id = await startRun(agent.id, { mode: 'dry-run' });
      const run = await stack.waitForOutcome(id, 90_000);
      assert.equal(run.outcome, 'completed', run.failureReason);
      assert.deepEqual(
        run.plan.map((p: { name: string }) => p.name),
        ['openssl'],
      );
      assert.deepEqual(fixture(agent).calls(), ['dry-run', 'dry-run'], 'the script ran twice');
      // Temporal's retry, not a loop in the agent: the second attempt carries the first one's failure.
      assert.deepEqual(await scriptAttempts(id), [{ attempt: 2, after: t.type }]);
    });
  }

  it('an apply that finds the package manager locked is not retried: the run fails naming the lock', async () => {
    const agent = await stack.startAgent('lock-apply', PLAN);
    fixture(agent).set('lock-apply', 1);
    const run = await stack.waitForOutcome(await startRun(agent.id), 60_000);
    assert.equal(run.outcome, 'failed');
    assert.match(run.failureReason, /^package-manager-locked: fixture lock failure/);
    assert.deepEqual(fixture(agent).calls(), ['dry-run', 'apply']);
    assert.equal(fixture(agent).applied(), false);
  });

  it("a dry-run that fails ends the run failed with the script's reason, not retried, and apply never runs", async () => {
    const agent = await stack.startAgent('fail-dry-run', PLAN);
    fixture(agent).set('fail-dry-run', 100);
    const run = await stack.waitForOutcome(await startRun(agent.id, { approval: 'required' }));
    assert.equal(run.outcome, 'failed');
    assert.equal(run.failureReason, 'dry-run exited 6: fixture failure');
    assert.equal(run.exitCode, 6);
    assert.deepEqual(fixture(agent).calls(), ['dry-run']);
    assert.equal(fixture(agent).applied(), false);
  });

  it('a dry-run interrupted by SIGTERM on the host exits 3 and ends the run failed, not retried', async () => {
    const agent = await stack.startAgent('sigterm-host', PLAN);
    fixture(agent).set('delay-dry-run', FOREVER);
    const id = await startRun(agent.id, { mode: 'dry-run' });
    await fixture(agent).started('dry-run', 1);
    process.kill(fixture(agent).pid('dry-run'), 'SIGTERM'); // e.g. the host shutting down
    const run = await stack.waitForOutcome(id);
    assert.equal(run.outcome, 'failed');
    assert.equal(run.failureReason, 'dry-run exited 3: interrupted by SIGTERM');
    assert.equal(run.exitCode, 3);
    assert.deepEqual(fixture(agent).calls(), ['dry-run']);
  });

  it("an apply run with nothing to upgrade ends completed with 'nothing to apply', without review or apply", async () => {
    const agent = await stack.startAgent('nothing-host', []);
    const run = await stack.waitForOutcome(await startRun(agent.id, { approval: 'required' }));
    assert.equal(run.outcome, 'completed');
    assert.equal(run.failureReason, 'nothing to apply');
    assert.deepEqual(run.plan, []);
    assert.equal(run.approvedBy, null);
    assert.deepEqual(fixture(agent).calls(), ['dry-run']);
    assert.equal(fixture(agent).applied(), false);
  });

  it('rejecting by signal, as `temporal workflow signal --name reject` sends it, ends the run rejected without applying', async () => {
    const agent = await stack.startAgent('reject-signal', PLAN);
    const id = await startRun(agent.id, { approval: 'required' });
    await stack.waitForRun(id, (r) => r.phase === 'awaiting-approval');
    await cliSignal(id, 'reject', { by: 'carol', reason: 'change freeze' });
    const run = await stack.waitForOutcome(id);
    assert.equal(run.outcome, 'rejected');
    assert.equal(run.rejectedBy, 'carol');
    assert.equal(run.rejectReason, 'change freeze');
    assert.deepEqual(fixture(agent).calls(), ['dry-run']);
    assert.equal(fixture(agent).applied(), false);
  });

  it('cancelling during planning ends the run cancelled, in the record and in Temporal, and the dry-run gets SIGTERM', async () => {
    const agent = await stack.startAgent('cancel-plan', PLAN);
    fixture(agent).set('delay-dry-run', FOREVER);
    const id = await startRun(agent.id);
    await fixture(agent).started('dry-run', 1);
    await cancel(id);
    const run = await stack.waitForOutcome(id);
    assert.equal(run.outcome, 'cancelled');
    assert.equal(run.failureReason, 'cancelled by request');
    assert.deepEqual(await temporalOutcome(id), { status: 'cancelled', attribute: 'cancelled' });
    // The agent hears of the cancellation on its next heartbeat and stops the script.
    await until('the dry-run to be interrupted', () => fixture(agent).read('interrupted') === 'dry-run SIGTERM\n');
    assert.deepEqual(fixture(agent).calls(), ['dry-run']);
    assert.equal(fixture(agent).applied(), false);
  });

  it('a cancel that arrives as the run starts (before it has claimed its row) still ends it cancelled, in the record and in Temporal', async () => {
    const agent = await stack.startAgent('cancel-at-start', PLAN);
    const id = await startRun(agent.id);
    await cancel(id); // no wait: usually before the workflow's first task
    const run = await stack.waitForOutcome(id);
    assert.equal(run.outcome, 'cancelled');
    assert.equal(run.phase, 'done');
    assert.deepEqual(await temporalOutcome(id), { status: 'cancelled', attribute: 'cancelled' });
    assert.equal(fixture(agent).applied(), false);
  });

  // Cancel during apply is deferred until the apply has finished (test/faults/host.test.ts), and an
  // agent that survives a script killed by the signal is tested in test/agent/activities.test.ts
  // and test/faults/agent.test.ts.

  describe('inside a maintenance window', { concurrency: true }, () => {
    const windowRun = async (agents: (TestAgent | string)[], body: Record<string, unknown>) => {
      const w = await stack.http('POST', '/v1/windows', {
        body: {
          name: `lifecycle ${Math.random().toString(36).slice(2)}`,
          targets: { agentIds: agents.map((a) => (typeof a === 'string' ? a : a.id)) },
          recurrence: { everySeconds: 3600 },
          startAt: '2030-01-01T00:00:00Z', // only the trigger below fires it
          timezone: 'UTC',
          ...body,
        },
      });
      assert.equal(w.status, 201, JSON.stringify(w.body));
      assert.equal((await stack.http('POST', `/v1/windows/${w.body.window.id}/trigger`)).status, 202);
      let rows: { id: string; agent_id: string; window_start: Date }[] = [];
      await until('the window to start its runs', async () => {
        rows = await stack.database.db('patch_runs').where({ window_id: w.body.window.id });
        return rows.length === agents.length;
      });
      return rows;
    };

    it('a plan that changes after approval ends plan-drift at window start, without applying', async () => {
      const agent = await stack.startAgent('window-drift', PLAN);
      // Planned at the trigger, applied 30 s later at window start: time to plan and approve on a busy machine.
      const [row] = await windowRun([agent], {
        approval: 'pre-approved',
        leadSeconds: 30,
        durationSeconds: 120,
        cutoffSeconds: 30,
      });
      const waiting = await stack.waitForRun(row.id, (r) => r.phase === 'awaiting-approval' || r.outcome !== null);
      assert.equal(waiting.phase, 'awaiting-approval', waiting.failureReason);
      const ok = await stack.approve(row.id, waiting.planHash);
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      fixture(agent).set('plan.txt', [...PLAN, 'bash amd64 5.2.15-2 5.2.15-3 bookworm'].join('\n'));
      const run = await stack.waitForOutcome(row.id, 90_000);
      assert.equal(run.outcome, 'plan-drift', run.failureReason);
      assert.match(run.failureReason, /re-approval needed/);
      const replan = run.output.find((o: { step: string }) => o.step === 'replan');
      assert.ok(Date.parse(replan.at) >= row.window_start.getTime(), 're-planned at window start, not at approval');
      assert.deepEqual(fixture(agent).calls(), ['dry-run', 'dry-run']);
      assert.equal(fixture(agent).applied(), false);
    });

    it('a host whose agent is offline ends agent-unreachable at the cutoff, while the online host patches', async () => {
      const online = await stack.startAgent('window-online', PLAN);
      const offline = await stack.registerOffline('window-offline');
      // applyBy = start + 30 s: the offline host's pickup timeout, and the online host's time to plan.
      const rows = await windowRun([online, offline], { approval: 'auto', durationSeconds: 40, cutoffSeconds: 10 });
      const gone = await stack.waitForOutcome(rows.find((r) => r.agent_id === offline)!.id, 90_000);
      assert.equal(gone.outcome, 'agent-unreachable');
      assert.match(gone.failureReason, new RegExp(`^agent ${offline} did not pick up hashVerify within \\d+ ms`));
      const patched = await stack.waitForOutcome(rows.find((r) => r.agent_id === online.id)!.id, 90_000);
      assert.equal(patched.outcome, 'completed', patched.failureReason);
      assert.ok(fixture(online).applied());
    });
  });
});
