import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ScheduleNotFoundError } from '@temporalio/client';
import { Stack } from '../support/stack';

const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security'];
/** Far enough ahead that only explicit triggers fire these windows during the test. */
const NOT_BEFORE_2030 = { startAt: '2030-01-01T00:00:00Z' };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('maintenance windows on Temporal Schedules', { concurrency: true }, () => {
  const stack = new Stack();
  before(() => stack.start());
  after(() => stack.stop());

  const createWindow = async (body: Record<string, unknown>) => {
    const r = await stack.http('POST', '/v1/windows', {
      body: {
        name: 'test window',
        timezone: 'Europe/Berlin',
        durationSeconds: 60,
        cutoffSeconds: 10,
        approval: 'auto',
        ...body,
      },
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.window;
  };
  const windowRuns = (windowId: string) =>
    stack.database.db('patch_runs').where({ window_id: windowId }).orderBy('created_at');
  const waitFor = async <T>(
    what: string,
    probe: () => Promise<T | undefined | false>,
    timeoutMs = 30_000,
  ): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const v = await probe();
      if (v) return v;
      await sleep(200);
    }
    throw new Error(`timed out waiting for ${what}`);
  };

  /** Fire the window now through its Schedule and return the first run it starts. */
  const triggerFirstRun = async (windowId: string) => {
    assert.equal((await stack.http('POST', `/v1/windows/${windowId}/trigger`)).status, 202);
    const [row] = await waitFor('the window run', async () => {
      const r = await windowRuns(windowId);
      return r.length > 0 && r;
    });
    return row;
  };

  it('a window recurring every few seconds fires real runs through its Schedule; pause stops them, resume restarts them, delete removes the Schedule', async () => {
    const agent = await stack.startAgent('win-host', PLAN);
    const w = await createWindow({
      targets: { agentIds: [agent.id] },
      recurrence: { everySeconds: 2 },
      durationSeconds: 30,
      cutoffSeconds: 5,
    });
    const handle = stack.temporal.schedule.getHandle(w.scheduleId);
    const desc = await handle.describe();
    assert.match(desc.state.note ?? '', /^test window: every 2s/);

    const firstRun = await waitFor('a window run to complete', async () =>
      (await windowRuns(w.id)).find((r) => r.outcome === 'completed'),
    );
    assert.equal(firstRun.agent_id, agent.id);
    assert.equal(firstRun.requested_by, `window:${w.id}`);
    const runDesc = await stack.temporal.workflow.getHandle(firstRun.id).describe();
    assert.match(
      runDesc.parentExecution?.workflowId ?? '',
      new RegExp(`^window\\.${w.id}`),
      'the run is a child of the window workflow',
    );

    const paused = await stack.http('POST', `/v1/windows/${w.id}/pause`, { body: { note: 'change freeze' } });
    assert.equal(paused.status, 200);
    assert.equal(paused.body.window.paused, true);
    assert.equal((await handle.describe()).state.paused, true);
    const firings = async () => {
      const { info } = await handle.describe();
      return info.numActionsTaken + info.numActionsSkippedOverlap;
    };
    const firedBeforePause = await firings();
    await sleep(5000);
    assert.equal(await firings(), firedBeforePause, 'the Schedule does not fire while paused');
    const whilePaused = (await windowRuns(w.id)).length;

    const resumed = await stack.http('POST', `/v1/windows/${w.id}/resume`, { body: {} });
    assert.equal(resumed.body.window.paused, false);
    await waitFor('a firing after resume', async () => (await firings()) > firedBeforePause);
    await waitFor('a run after resume', async () => (await windowRuns(w.id)).length > whilePaused);

    const shown = await stack.http('GET', `/v1/windows/${w.id}`);
    assert.equal(shown.status, 200);
    assert.ok(shown.body.window.schedule.nextFireTimes.length > 0);
    assert.ok(shown.body.window.recentRuns.some((r: any) => r.outcome === 'completed'));

    assert.equal((await stack.http('DELETE', `/v1/windows/${w.id}`)).status, 204);
    await assert.rejects(handle.describe(), ScheduleNotFoundError);
    assert.equal((await stack.http('GET', `/v1/windows/${w.id}`)).status, 404);
  });

  it('pre-approved: the plan is made before the window, an approved plan is applied at window start, an unapproved one is skipped', async () => {
    const approved = await stack.startAgent('pre-ok', PLAN);
    const ignored = await stack.startAgent('pre-ignored', PLAN);
    const w = await createWindow({
      ...NOT_BEFORE_2030,
      targets: { agentIds: [approved.id, ignored.id] },
      recurrence: { everySeconds: 3600 },
      approval: 'pre-approved',
      leadSeconds: 6,
    });
    const triggeredAt = Date.now();
    assert.equal((await stack.http('POST', `/v1/windows/${w.id}/trigger`)).status, 202);
    const rows = await waitFor('both planned runs', async () => {
      const r = await windowRuns(w.id);
      return r.length === 2 && r;
    });
    const okRun = rows.find((r) => r.agent_id === approved.id)!;
    const skipRun = rows.find((r) => r.agent_id === ignored.id)!;
    const waiting = await stack.waitForRun(okRun.id, (r) => r.phase === 'awaiting-approval');
    assert.ok(
      Date.parse(waiting.createdAt) < Date.parse(okRun.window_start.toISOString()),
      'planned before the window starts',
    );
    assert.equal(existsSync(path.join(approved.fixtureDir, 'applied')), false);
    const r = await stack.http('POST', `/v1/runs/${okRun.id}/approve`, { body: { planHash: waiting.planHash } });
    assert.equal(r.status, 200, JSON.stringify(r.body));

    const done = await stack.waitForOutcome(okRun.id, 30_000);
    assert.equal(done.outcome, 'completed', done.failureReason);
    const applyAt = Date.parse(done.output.find((o: any) => o.step === 'apply').at);
    assert.ok(applyAt >= Date.parse(okRun.window_start.toISOString()), 'applied at window start, not at approval');
    assert.ok(applyAt - triggeredAt >= 5000);

    const skipped = await stack.waitForOutcome(skipRun.id, 30_000);
    assert.equal(skipped.outcome, 'skipped-unapproved');
    assert.equal(existsSync(path.join(ignored.fixtureDir, 'applied')), false);
  });

  it('a run that has not started applying by the cutoff is skipped-window-closed', async () => {
    const agent = await stack.startAgent('cutoff-host', PLAN);
    // applyBy = start + 10 s; the plan alone takes 14 s (margins for a loaded CI machine)
    writeFileSync(path.join(agent.fixtureDir, 'delay-dry-run'), '14');
    const w = await createWindow({
      ...NOT_BEFORE_2030,
      targets: { agentIds: [agent.id] },
      recurrence: { everySeconds: 3600 },
      durationSeconds: 40,
      cutoffSeconds: 30,
    });
    const row = await triggerFirstRun(w.id);
    const run = await stack.waitForOutcome(row.id, 60_000);
    assert.equal(run.outcome, 'skipped-window-closed');
    assert.equal(existsSync(path.join(agent.fixtureDir, 'applied')), false, 'apply never started');
  });

  it('an apply still running at window end is allowed to finish and is flagged overran', async () => {
    const agent = await stack.startAgent('overrun-host', PLAN);
    // the window ends 16 s after it starts; the apply alone takes 18 s
    writeFileSync(path.join(agent.fixtureDir, 'delay-apply'), '18');
    const w = await createWindow({
      ...NOT_BEFORE_2030,
      targets: { agentIds: [agent.id] },
      recurrence: { everySeconds: 3600 },
      durationSeconds: 16,
      cutoffSeconds: 1,
    });
    const row = await triggerFirstRun(w.id);
    const run = await stack.waitForOutcome(row.id, 60_000);
    assert.equal(run.outcome, 'completed', run.failureReason);
    assert.ok(existsSync(path.join(agent.fixtureDir, 'applied')), 'the package manager was not killed');
    assert.equal(run.overran, true);
    assert.equal(run.windowId, w.id);
  });

  it('dry-run-only plans and reports but never applies', async () => {
    const agent = await stack.startAgent('dryonly-host', PLAN);
    const w = await createWindow({
      ...NOT_BEFORE_2030,
      targets: { agentIds: [agent.id] },
      recurrence: { everySeconds: 3600 },
      approval: 'dry-run-only',
    });
    const row = await triggerFirstRun(w.id);
    const run = await stack.waitForOutcome(row.id);
    assert.equal(run.outcome, 'completed');
    assert.equal(run.mode, 'dry-run');
    assert.equal(run.plan.length, 1);
    assert.equal(existsSync(path.join(agent.fixtureDir, 'applied')), false);
  });

  it('a window at 02:30 Europe/Berlin fires at the right instants across both DST changes of 2027', async () => {
    const agentId = await stack.registerOffline('dst-host');
    const spring = await createWindow({
      targets: { agentIds: [agentId] },
      recurrence: { calendar: { hour: 2, minute: 30 } },
      startAt: '2027-03-26T00:00:00Z',
      endAt: '2027-03-31T00:00:00Z',
    });
    const s = await stack.http('GET', `/v1/windows/${spring.id}`);
    // 02:30 CET is 01:30Z; on 28 March clocks jump 02:00→03:00, so 02:30 does not exist that day.
    assert.deepEqual(s.body.window.schedule.nextFireTimes, DST.spring);
    assert.equal(spring.warnings.length, 1, 'the admin is told about the skipped day');
    assert.match(spring.warnings[0], /02:30 does not exist in Europe\/Berlin on 2027-03-28/);
    const autumn = await createWindow({
      targets: { agentIds: [agentId] },
      recurrence: { calendar: { hour: 2, minute: 30 } },
      startAt: '2027-10-29T00:00:00Z',
      endAt: '2027-11-02T00:00:00Z',
    });
    const a = await stack.http('GET', `/v1/windows/${autumn.id}`);
    // On 31 October 02:30 happens twice (CEST, then CET).
    assert.deepEqual(a.body.window.schedule.nextFireTimes, DST.autumn);
    assert.deepEqual(autumn.warnings, [], 'a repeated hour loses no firing');
  });

  const bad: [string, Record<string, unknown>, string][] = [
    ['an unknown timezone', { timezone: 'Mars/Olympus_Mons' }, 'timezone'],
    ['a cron expression that is not one', { recurrence: { cron: 'every sunday' } }, 'recurrence.cron'],
    ['a cron expression Temporal cannot parse', { recurrence: { cron: '61 25 * * *' } }, 'recurrence'],
    ['a zero duration', { durationSeconds: 0 }, 'durationSeconds'],
    ['a cutoff as long as the window', { durationSeconds: 600, cutoffSeconds: 600 }, 'cutoffSeconds'],
    ['an unknown agent', { targets: { agentIds: ['ghost-host'] } }, 'targets.agentIds'],
    ['a lead time on an auto window', { leadSeconds: 60 }, 'leadSeconds'],
  ];
  for (const [what, override, field] of bad) {
    it(`a window with ${what} is a 400 naming ${field}; no window and no orphan Schedule`, async () => {
      const agentId = await stack.registerOffline(`badwin-${Math.random().toString(36).slice(2, 8)}`);
      const name = `bad window ${Math.random().toString(36).slice(2)}`;
      const r = await stack.http('POST', '/v1/windows', {
        body: {
          name,
          targets: { agentIds: [agentId] },
          recurrence: { cron: '30 2 * * 0' },
          timezone: 'Europe/Berlin',
          durationSeconds: 7200,
          cutoffSeconds: 1800,
          approval: 'auto',
          ...override,
        },
      });
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal(r.body.error.code, 'validation_failed');
      assert.equal(r.body.error.field, field);
      assert.deepEqual(await stack.database.db('maintenance_windows').where({ name }), []);
      await sleep(1000); // schedule listing is eventually consistent
      for await (const schedule of stack.temporal.schedule.list()) {
        assert.ok(!(schedule.state.note ?? '').startsWith(name), `orphan schedule ${schedule.scheduleId}`);
      }
    });
  }
});

/** Fire instants Temporal computes for 02:30 Europe/Berlin around the 2027 DST changes. */
const DST = {
  // 28 March has no 02:30: Temporal skips that day's firing (docs/windows.md: avoid 02:00–03:00).
  spring: [
    '2027-03-26T01:30:00.000Z',
    '2027-03-27T01:30:00.000Z',
    '2027-03-29T00:30:00.000Z',
    '2027-03-30T00:30:00.000Z',
  ],
  // 31 October has 02:30 twice (00:30Z in CEST, 01:30Z in CET): Temporal fires once, at the second.
  autumn: [
    '2027-10-29T00:30:00.000Z',
    '2027-10-30T00:30:00.000Z',
    '2027-10-31T01:30:00.000Z',
    '2027-11-01T01:30:00.000Z',
  ],
};
