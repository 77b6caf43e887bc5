import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { MAX_IGNORED_KEPT } from '../../contract/workflow-safe';
import { approveSignal, approveUpdate, rejectSignal, rejectUpdate, statusQuery } from '../../workflows/messages';
import { PatchOutcome, PatchPhase } from '../../workflows/search-attributes';
import { replayHistory, Stack } from '../support/stack';

const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security'];
const MB = 'x'.repeat(1024 * 1024);

/**
 * Hostile signals and Updates, sent straight to Temporal as anyone with namespace access could:
 * NUL bytes, 1 MB strings, wrong types and a burst of 1,000. The run refuses each, stays
 * bounded, keeps waiting, and still ends in a named outcome that the record and Temporal agree on.
 */
describe('fault: hostile signals and Updates', { concurrency: true }, () => {
  const stack = new Stack();
  before(() => stack.start());
  after(() => stack.stop());

  const awaiting = async (host: string) => {
    const agent = await stack.startAgent(host, PLAN);
    const r = await stack.http('POST', '/v1/runs', { body: { agentId: agent.id, mode: 'apply' } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const run = await stack.waitForRun(r.body.run.id, (x) => x.phase === 'awaiting-approval' || x.outcome !== null);
    assert.equal(run.phase, 'awaiting-approval');
    return { agent, run, handle: stack.temporal.workflow.getHandle(r.body.run.id) };
  };

  it('Updates with a NUL byte, a 1 MB string or wrong types are refused and change nothing', async () => {
    const { run, handle } = await awaiting('hostile-update');
    const bad: unknown[] = [
      { by: 'nul\u0000here', planHash: run.planHash },
      { by: MB, planHash: run.planHash },
      { by: 42, planHash: run.planHash },
      { by: 'mallory', planHash: ['not', 'a', 'hash'] },
      'not an object',
      null,
    ];
    for (const payload of bad) {
      await assert.rejects(
        handle.executeUpdate(approveUpdate, { args: [payload as never] }),
        (err: unknown) =>
          err instanceof WorkflowUpdateFailedError && /malformed/.test(String((err.cause as Error)?.message)),
        JSON.stringify(payload).slice(0, 80),
      );
    }
    await assert.rejects(
      handle.executeUpdate(rejectUpdate, { args: [{ by: 'mallory', reason: 'nul \u0000 here' }] }),
      (err: unknown) => err instanceof WorkflowUpdateFailedError,
    );
    const status = await handle.query(statusQuery);
    assert.equal(status.phase, 'awaiting-approval');
    assert.equal(status.approvedBy, null);
    assert.equal(status.rejectedBy, null);
  });

  it('a burst of 1,000 malformed signals is counted, not kept: the run stays bounded and a real approval still completes it', async () => {
    const { agent, run, handle } = await awaiting('signal-burst');
    const burst = Array.from({ length: 1000 }, (_, i) =>
      i % 4 === 0
        ? { by: `nul\u0000${i}`, reason: 'r' }
        : i % 4 === 1
          ? { by: MB.slice(0, 10_000), planHash: run.planHash }
          : i % 4 === 2
            ? { by: 'x', planHash: 'f'.repeat(64) }
            : [i],
    );
    for (let i = 0; i < burst.length; i += 50) {
      await Promise.all(
        burst
          .slice(i, i + 50)
          .map((p, j) => handle.signal((i + j) % 4 === 0 ? rejectSignal : approveSignal, p as never)),
      );
    }
    await handle.signal(approveSignal, { by: 'nul\u0000', planHash: run.planHash });
    // One 1 MB signal, the largest a careless script might send.
    await handle.signal(rejectSignal, { by: 'mallory', reason: MB });

    // Wait until the run has taken in every signal (a busy worker may time out a query meanwhile).
    const status = await stack.waitFor(
      'the run to count every refused signal',
      async () => {
        const st = await handle.query(statusQuery).catch(() => null);
        return st && st.ignoredDecisions.length + st.ignoredDecisionsDropped === 1002 && st;
      },
      120_000,
    );
    assert.equal(status.phase, 'awaiting-approval', 'no malformed or stale signal decided the run');
    assert.equal(status.ignoredDecisions.length, MAX_IGNORED_KEPT);
    assert.equal(status.ignoredDecisionsDropped, 1002 - MAX_IGNORED_KEPT);
    for (const d of status.ignoredDecisions) {
      assert.ok(d.payload.length <= 600, `a kept payload is a bounded preview (${d.payload.length} chars)`);
      assert.equal(d.payload.includes('\u0000'), false, 'no NUL in a kept payload');
    }

    const approved = await stack.approve(run.id, run.planHash);
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
    const done = await stack.waitForOutcome(run.id, 60_000);
    assert.equal(done.outcome, 'completed', done.failureReason);
    assert.equal(done.approvedBy, 'alice');
    const ignoredRows = done.events.filter((e: any) => /^ignored-(approve|reject)$/.test(e.kind));
    assert.equal(ignoredRows.length, MAX_IGNORED_KEPT, 'the record keeps the same bounded list');
    const dropped = done.events.find((e: any) => e.kind === 'ignored-decisions-dropped');
    assert.deepEqual(dropped?.detail, { dropped: 1002 - MAX_IGNORED_KEPT, kept: MAX_IGNORED_KEPT });
    assert.ok(agent);

    // The record and Temporal say the same thing.
    const desc = await handle.describe();
    assert.equal(desc.status.name, 'COMPLETED');
    assert.equal(desc.typedSearchAttributes.get(PatchOutcome), 'completed');
    assert.equal(desc.typedSearchAttributes.get(PatchPhase), 'done');
    // The whole history, 1,000 signals included, replays against the workflow code.
    await replayHistory(stack.temporal, run.id);
  });

  it('a reject through the API with a NUL byte in its reason is a 400 naming the field, and the run keeps waiting', async () => {
    const { run, handle } = await awaiting('api-nul');
    const r = await stack.http('POST', `/v1/runs/${run.id}/reject`, { body: { reason: 'nul \u0000 here' } });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(r.body.error.field, 'reason');
    assert.equal((await handle.query(statusQuery)).phase, 'awaiting-approval');
    const ok = await stack.http('POST', `/v1/runs/${run.id}/reject`, { body: { reason: 'not today' } });
    assert.equal(ok.status, 200);
    const done = await stack.waitForOutcome(run.id);
    assert.equal(done.outcome, 'rejected');
    assert.equal(done.rejectReason, 'not today');
  });
});
