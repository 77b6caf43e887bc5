import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { resolveRunTimeouts, type PatchRunInput, type RunStatus } from '../../contract';
import { newRunId } from '../../contract/run-id';
import { insertRunRows, recordOutcome, RunNotClaimedError } from '../../db/runs';
import { maintenanceWindow } from '../../workflows/maintenance-window';
import { patchRun } from '../../workflows/patch-run';
import { PatchOutcome } from '../../workflows/search-attributes';
import { replayHistory, Stack, TRIGGER_ONLY_WINDOW, type TestAgent } from '../support/stack';

const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security'];

/**
 * Anyone with access to the Temporal namespace can start `patchRun` with any input, bypassing
 * the API. The workflow trusts nothing in it the API did not write: these runs are started with
 * the Temporal client directly, as such a person would (issue 13).
 */
describe('a patchRun started around the API', { concurrency: true }, () => {
  const stack = new Stack();
  before(() => stack.start());
  after(() => stack.stop());

  const calls = (agent: TestAgent) => {
    const file = path.join(agent.fixtureDir, 'calls.log');
    return existsSync(file) ? readFileSync(file, 'utf8') : null;
  };
  /** A run's whole record: its row and everything hanging off it. */
  const record = async (id: string) => {
    const db = stack.database.db;
    return {
      row: await db('patch_runs').where({ id }).first(),
      packages: await db('run_packages').where({ run_id: id }).orderBy('id'),
      output: await db('run_output').where({ run_id: id }).orderBy('id'),
      events: await db('run_events').where({ run_id: id }).orderBy('id'),
    };
  };
  const freshId = (agentId: string) => newRunId(agentId, Date.now(), () => randomInt(32) / 32);
  const inputFor = (agent: TestAgent, runId: string, over: Partial<PatchRunInput> = {}): PatchRunInput => ({
    runId,
    agentId: agent.id,
    hostname: 'forged',
    mode: 'apply',
    approval: 'auto',
    requestedBy: 'mallory',
    timeouts: resolveRunTimeouts(stack.runDefaults),
    ...over,
  });
  /** Start patchRun directly on Temporal and wait for its result. */
  const startDirectly = async (workflowId: string, input: PatchRunInput): Promise<RunStatus> => {
    const handle = await stack.temporal.workflow.start(patchRun, {
      taskQueue: stack.controlQueue,
      workflowId,
      args: [input],
    });
    return handle.result();
  };
  /** Refused: outcome untrusted-input in the result and in visibility, and no activity but the claim ran. */
  const assertRefused = async (workflowId: string, status: RunStatus, reason: RegExp) => {
    assert.equal(status.outcome, 'untrusted-input', JSON.stringify(status));
    assert.match(status.failureReason ?? '', reason);
    const handle = stack.temporal.workflow.getHandle(workflowId);
    const desc = await handle.describe();
    assert.equal(desc.typedSearchAttributes.get(PatchOutcome), 'untrusted-input');
    const { events } = await handle.fetchHistory();
    const scheduled = (events ?? []).filter((e) => e.activityTaskScheduledEventAttributes);
    assert.deepEqual(scheduled, [], 'no host lock request, no agent activity');
    const markers = (events ?? []).filter((e) => e.markerRecordedEventAttributes);
    assert.equal(markers.length, 1, 'one local activity: the claim');
  };

  it('(a) another run’s id as its input runId: refused, the other run’s record unchanged and it still completes', async () => {
    const agent = await stack.startAgent('victim-a', PLAN);
    const r = await stack.http('POST', '/v1/runs', {
      body: { agentId: agent.id, mode: 'apply', approval: 'required' },
    });
    assert.equal(r.status, 202);
    const victim = r.body.run.id as string;
    await stack.waitForRun(victim, (x) => x.phase === 'awaiting-approval');
    const before = await record(victim);
    const callsBefore = calls(agent);

    const forgedId = freshId(agent.id);
    const status = await startDirectly(
      forgedId,
      inputFor(agent, victim, { mode: 'apply', approval: 'required', requestedBy: before.row.requested_by }),
    );
    await assertRefused(forgedId, status, /input runId .* is not the workflow id/);
    assert.deepEqual(await record(victim), before, 'the other run’s row, packages, output and events');
    assert.equal((await record(forgedId)).row, undefined, 'no row for the forged run');
    assert.equal(calls(agent), callsBefore, 'the agent ran nothing for it');
    await replayHistory(stack.temporal, forgedId);

    // The victim run is unharmed: approve it and it applies as usual.
    const approve = await stack.approve(victim, before.row.plan_hash);
    assert.equal(approve.status, 200, JSON.stringify(approve.body));
    const done = await stack.waitForOutcome(victim, 60_000);
    assert.equal(done.outcome, 'completed', done.failureReason);
  });

  it('(b) a closed run’s id as workflow id, input changed to approval auto (or unchanged): refused, its record unchanged', async () => {
    const agent = await stack.startAgent('victim-b', PLAN);
    const r = await stack.http('POST', '/v1/runs', { body: { agentId: agent.id, mode: 'dry-run' } });
    const closed = r.body.run.id as string;
    const done = await stack.waitForOutcome(closed, 60_000);
    assert.equal(done.outcome, 'completed');
    const before = await record(closed);
    const callsBefore = calls(agent);
    assert.equal(callsBefore, 'dry-run\n');

    for (const over of [
      { mode: 'apply', approval: 'auto' },
      { mode: 'dry-run', approval: before.row.approval, requestedBy: before.row.requested_by },
    ] as Partial<PatchRunInput>[]) {
      const status = await startDirectly(closed, inputFor(agent, closed, over));
      await assertRefused(
        closed,
        status,
        over.mode === 'apply' ? /belongs to workflow execution|differs/ : /belongs to workflow execution/,
      );
      assert.deepEqual(await record(closed), before, `the closed run's record, after ${JSON.stringify(over)}`);
    }
    assert.equal(calls(agent), callsBefore, 'nothing more was executed on the host');
    assert.equal(existsSync(path.join(agent.fixtureDir, 'applied')), false);
  });

  it('(c) a fresh id with no row: refused, no row appears, nothing executed', async () => {
    const agent = await stack.startAgent('victim-c', PLAN);
    const id = freshId(agent.id);
    const status = await startDirectly(id, inputFor(agent, id));
    await assertRefused(id, status, /no run row/);
    assert.equal((await record(id)).row, undefined);
    assert.equal(calls(agent), null, 'the fixture script was never called');
  });

  it('(d) a row the API wrote for a dry-run, started as an apply: refused, the row unchanged and still unclaimed', async () => {
    const agent = await stack.startAgent('victim-d', PLAN);
    const id = freshId(agent.id);
    // The row exactly as the API writes it just before it starts the workflow.
    await insertRunRows(stack.database.db, [
      { runId: id, agentId: agent.id, mode: 'dry-run', approval: 'required', requestedBy: 'alice' },
    ]);
    const before = await record(id);
    const status = await startDirectly(id, inputFor(agent, id, { mode: 'apply', approval: 'required' }));
    await assertRefused(id, status, /mode \(row dry-run, input apply\)/);
    const afterward = await record(id);
    assert.deepEqual(afterward, before);
    assert.equal(afterward.row.workflow_run_id, null);
    assert.equal(calls(agent), null, 'the fixture script was never called');
  });

  it('a control write for an execution that did not claim the row writes nothing and says so', async () => {
    const agent = await stack.startAgent('victim-w', PLAN);
    const r = await stack.http('POST', '/v1/runs', { body: { agentId: agent.id, mode: 'dry-run' } });
    const id = r.body.run.id as string;
    await stack.waitForOutcome(id, 60_000);
    const before = await record(id);
    await assert.rejects(
      recordOutcome(
        stack.database.db,
        { runId: id, workflowRunId: 'another-execution' },
        { outcome: 'completed', failureReason: 'overwritten', execution: null, overran: false },
      ),
      (err: unknown) =>
        err instanceof RunNotClaimedError && /not claimed by workflow execution another-execution/.test(err.message),
    );
    assert.deepEqual(await record(id), before);
  });

  it('a maintenance window started directly (not by its Schedule) starts no run; its Schedule’s firing does', async () => {
    const agent = await stack.startAgent('window-host', PLAN);
    const w = await stack.createWindow({ ...TRIGGER_ONLY_WINDOW, targets: { agentIds: [agent.id] }, approval: 'auto' });
    // The workflow id a Schedule firing would have: the id proves nothing.
    const forged = await stack.temporal.workflow.start(maintenanceWindow, {
      taskQueue: stack.controlQueue,
      workflowId: `${w.scheduleId}-2030-01-06T02:00:00Z`,
      args: [{ windowId: w.id }],
    });
    const report = await forged.result();
    assert.match(report.skipped ?? '', /was not started by Schedule/);
    assert.deepEqual(report.runs, []);
    assert.deepEqual(await stack.windowRuns(w.id), [], 'no run row');
    assert.equal(calls(agent), null, 'nothing executed');

    const row = await stack.triggerFirstRun(w.id);
    const run = await stack.waitForOutcome(row.id, 60_000);
    assert.equal(run.outcome, 'completed', run.failureReason);
    assert.equal(calls(agent), 'dry-run\napply\n');
  });

  it('the API path claims its row and runs as before', async () => {
    const agent = await stack.startAgent('honest', PLAN);
    const r = await stack.http('POST', '/v1/runs', { body: { agentId: agent.id, mode: 'apply', approval: 'auto' } });
    assert.equal(r.status, 202);
    const run = await stack.waitForOutcome(r.body.run.id, 60_000);
    assert.equal(run.outcome, 'completed', run.failureReason);
    assert.equal(calls(agent), 'dry-run\napply\n');
    const { row } = await record(r.body.run.id);
    const desc = await stack.temporal.workflow.getHandle(r.body.run.id).describe();
    assert.equal(row.workflow_run_id, desc.runId, 'claimed by the execution the API started');
  });
});
