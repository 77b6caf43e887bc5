import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
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

  const createWindow = (body: Record<string, unknown>) => stack.createWindow(body);
  const windowRuns = (windowId: string) => stack.windowRuns(windowId);
  const waitFor = <T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs?: number) =>
    stack.waitFor(what, probe, timeoutMs);

  /** When each script execution of a run was started on the agent, and in which mode, from its Temporal history. */
  const scriptStarts = async (runId: string) => {
    const events = (await stack.temporal.workflow.getHandle(runId).fetchHistory()).events ?? [];
    const modes = new Map<string, string>();
    for (const e of events) {
      const a = e.activityTaskScheduledEventAttributes;
      if (a?.activityType?.name !== 'scriptExecute') continue;
      const input = JSON.parse(Buffer.from(a.input!.payloads![0].data!).toString());
      modes.set(String(e.eventId), input.mode);
    }
    return events
      .filter((e) => modes.has(String(e.activityTaskStartedEventAttributes?.scheduledEventId ?? '')))
      .map((e) => ({
        mode: modes.get(String(e.activityTaskStartedEventAttributes!.scheduledEventId))!,
        at: Number(e.eventTime!.seconds) * 1000 + Math.floor((e.eventTime!.nanos ?? 0) / 1e6),
      }));
  };
  const calls = (fixtureDir: string) =>
    existsSync(path.join(fixtureDir, 'calls.log'))
      ? readFileSync(path.join(fixtureDir, 'calls.log'), 'utf8').trim().split('\n')
      : [];

  const triggerFirstRun = (windowId: string) => stack.triggerFirstRun(windowId);

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
    await waitFor('the Schedule to be paused', async () => (await handle.describe()).state.paused);
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

    const askedAt = Date.now();
    const shown = await stack.http('GET', `/v1/windows/${w.id}`);
    assert.equal(shown.status, 200);
    // Every 2 s on the epoch grid, from the next such instant on; an auto window opens when it fires.
    const next: string[] = shown.body.window.schedule.nextFireTimes;
    const first = Date.parse(next[0]);
    assert.ok(next.length >= 2, JSON.stringify(next));
    assert.equal(first % 2000, 0, `on the 2 s grid: ${next[0]}`);
    assert.ok(first > askedAt - 2000 && first <= Date.now() + 2000, `the next firing is the coming one: ${next[0]}`);
    assert.deepEqual(
      next,
      next.map((_, i) => new Date(first + i * 2000).toISOString()),
    );
    assert.deepEqual(shown.body.window.schedule.nextWindowStarts, next);
    assert.ok(shown.body.window.recentRuns.some((r: any) => r.outcome === 'completed'));

    assert.equal((await stack.http('DELETE', `/v1/windows/${w.id}`)).status, 204);
    await assert.rejects(handle.describe(), ScheduleNotFoundError);
    assert.equal((await stack.http('GET', `/v1/windows/${w.id}`)).status, 404);
  });

  it('pre-approved: the plan is made before the window, an approved plan is applied at window start, an unapproved one is skipped', async () => {
    const approved = await stack.startAgent('pre-ok', PLAN);
    const ignored = await stack.startAgent('pre-ignored', PLAN);
    // Both hosts must plan, and the test approve, inside the lead: 40 s leaves a loaded 2-core
    // machine ample room (a plan takes well under a second there when idle).
    const LEAD_S = 40;
    const w = await createWindow({
      ...NOT_BEFORE_2030,
      targets: { agentIds: [approved.id, ignored.id] },
      recurrence: { everySeconds: 3600 },
      approval: 'pre-approved',
      leadSeconds: LEAD_S,
    });
    const triggeredAt = Date.now();
    assert.equal((await stack.http('POST', `/v1/windows/${w.id}/trigger`)).status, 202);
    const rows = await waitFor('both planned runs', async () => {
      const r = await windowRuns(w.id);
      return r.length === 2 && r;
    });
    const okRun = rows.find((r) => r.agent_id === approved.id)!;
    const skipRun = rows.find((r) => r.agent_id === ignored.id)!;
    // The window opens a lead after the firing (the trigger), not at it.
    const windowStart = Date.parse(okRun.window_start.toISOString());
    assert.ok(
      windowStart >= triggeredAt + LEAD_S * 1000 - 1000 && windowStart <= Date.now() + LEAD_S * 1000,
      `window start ${okRun.window_start.toISOString()} is the firing plus the lead`,
    );
    const waiting = await stack.waitForRun(okRun.id, (r) => r.phase === 'awaiting-approval');
    const plannedAt = Date.parse(waiting.output.find((o: any) => o.step === 'plan').at);
    assert.ok(plannedAt < windowStart, 'the plan was recorded before the window starts');
    const r = await stack.approve(okRun.id, waiting.planHash);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.ok(Date.now() < windowStart, 'approved before the window starts');

    const done = await stack.waitForOutcome(okRun.id, LEAD_S * 1000 + 60_000);
    assert.equal(done.outcome, 'completed', done.failureReason);
    // From the run's history: the plan ran before the window, the re-plan and apply only from its start.
    const starts = await scriptStarts(okRun.id);
    assert.deepEqual(
      starts.map((x) => x.mode),
      ['dry-run', 'dry-run', 'apply'],
    );
    assert.ok(starts[0].at < windowStart, 'planned before the window');
    assert.ok(starts[1].at >= windowStart, 're-planned at window start, not at approval');
    assert.ok(starts[2].at >= windowStart, 'applied at window start, not at approval');
    assert.deepEqual(calls(approved.fixtureDir), ['dry-run', 'dry-run', 'apply']);

    const skipped = await stack.waitForOutcome(skipRun.id, LEAD_S * 1000 + 60_000);
    assert.equal(skipped.outcome, 'skipped-unapproved');
    assert.deepEqual(calls(ignored.fixtureDir), ['dry-run'], 'the unapproved host only planned');
    assert.equal(existsSync(path.join(ignored.fixtureDir, 'applied')), false);
  });

  it('a run that has not started applying by the cutoff is skipped-window-closed', async () => {
    const agent = await stack.startAgent('cutoff-host', PLAN);
    // applyBy = start + 20 s, which is also the agent's pickup budget (it needs well under 1 s);
    // the plan alone takes 24 s, so it ends after applyBy however late it started.
    writeFileSync(path.join(agent.fixtureDir, 'delay-dry-run'), '24');
    const w = await createWindow({
      ...NOT_BEFORE_2030,
      targets: { agentIds: [agent.id] },
      recurrence: { everySeconds: 3600 },
      durationSeconds: 60,
      cutoffSeconds: 40,
    });
    const row = await triggerFirstRun(w.id);
    const run = await stack.waitForOutcome(row.id, 120_000);
    assert.equal(run.outcome, 'skipped-window-closed', run.failureReason);
    assert.match(run.failureReason, /cutoff/);
    assert.deepEqual(calls(agent.fixtureDir), ['dry-run'], 'apply never started');
  });

  it('an apply still running at window end is allowed to finish and is flagged overran', async () => {
    const agent = await stack.startAgent('overrun-host', PLAN);
    // The window ends 30 s after it starts, so pickup and plan have 29 s to start the apply
    // (they need about a second); the apply alone takes 33 s, so it ends after the window.
    writeFileSync(path.join(agent.fixtureDir, 'delay-apply'), '33');
    const w = await createWindow({
      ...NOT_BEFORE_2030,
      targets: { agentIds: [agent.id] },
      recurrence: { everySeconds: 3600 },
      durationSeconds: 30,
      cutoffSeconds: 1,
    });
    const row = await triggerFirstRun(w.id);
    const run = await stack.waitForOutcome(row.id, 120_000);
    assert.equal(run.outcome, 'completed', run.failureReason);
    assert.ok(existsSync(path.join(agent.fixtureDir, 'applied')), 'the package manager was not killed');
    assert.equal(run.overran, true);
    assert.equal(run.windowId, w.id);
    const windowStart = Date.parse(row.window_start.toISOString());
    const apply = (await scriptStarts(row.id)).find((x) => x.mode === 'apply')!;
    assert.ok(apply.at < windowStart + 29_000, 'the apply started before the cutoff');
    assert.ok(Date.parse(run.finishedAt) > windowStart + 30_000, 'and finished after the window ended');
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

  it('a firing that comes after the cutoff (a late catch-up) starts no run', async () => {
    const agent = await stack.startAgent('late-host', PLAN);
    const w = await createWindow({
      targets: { agentIds: [agent.id] },
      recurrence: { cron: '0 * * * *' },
      timezone: 'UTC',
      durationSeconds: 600,
      cutoffSeconds: 60,
    });
    // A backfill fires the Schedule for a past hour, as a scheduler coming back after an outage
    // would: the firing is meant for that hour, whose window closed long ago.
    const hourAgo = Math.floor(Date.now() / 3600_000) * 3600_000 - 3600_000;
    const handle = stack.temporal.schedule.getHandle(w.scheduleId);
    await handle.backfill({ start: new Date(hourAgo - 1000), end: new Date(hourAgo + 1000) });
    const firing = await waitFor('the backfilled firing', async () =>
      (await handle.describe()).info.recentActions.find((a) => a.scheduledAt.getTime() === hourAgo),
    );
    const report = await stack.temporal.workflow
      .getHandle(firing.action.workflow.workflowId, firing.action.workflow.firstExecutionRunId)
      .result();
    assert.equal(report.skipped, 'fired after the cutoff');
    assert.equal(report.startsAt, new Date(hourAgo).toISOString(), 'the window keeps its intended start');
    assert.deepEqual(report.runs, []);
    assert.deepEqual(await windowRuns(w.id), [], 'no run row');
    assert.deepEqual(calls(agent.fixtureDir), [], 'the host was never asked to plan');
  });

  it('PATCH changes the window and its Schedule together; a change that makes it invalid changes neither', async () => {
    const agentId = await stack.registerOffline('patch-host');
    const w = await createWindow({
      targets: { agentIds: [agentId] },
      recurrence: { calendar: { hour: 2, minute: 30 } },
      startAt: '2030-01-01T00:00:00Z',
      durationSeconds: 3600,
      cutoffSeconds: 600,
    });
    const handle = stack.temporal.schedule.getHandle(w.scheduleId);
    assert.equal((await handle.describe()).info.nextActionTimes[0].toISOString(), '2030-01-01T01:30:00.000Z');

    const patched = await stack.http('PATCH', `/v1/windows/${w.id}`, {
      body: { recurrence: { calendar: { hour: 4, minute: 15 } }, durationSeconds: 5400, name: 'renamed window' },
    });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    assert.deepEqual(patched.body.window.recurrence, { calendar: { hour: 4, minute: 15 } });
    assert.equal(patched.body.window.durationSeconds, 5400);
    assert.equal(patched.body.window.cutoffSeconds, 600, 'fields not in the PATCH are kept');
    // A Schedule update is a request to Temporal's scheduler; describe until it has applied it.
    // 04:15 Berlin (CET) is 03:15Z.
    const desc = await waitFor('the Schedule to take the new spec', async () => {
      const d = await handle.describe();
      return d.info.nextActionTimes[0]?.toISOString() === '2030-01-01T03:15:00.000Z' && d;
    });
    assert.match(desc.state.note ?? '', /^renamed window: .*5400s, cutoff 600s/);
    assert.equal(desc.policies.catchupWindow, (5400 - 600) * 1000);
    const row = await stack.database.db('maintenance_windows').where({ id: w.id }).first();
    assert.equal(row.duration_seconds, 5400);

    const bad = await stack.http('PATCH', `/v1/windows/${w.id}`, { body: { cutoffSeconds: 5400 } });
    assert.equal(bad.status, 400, JSON.stringify(bad.body));
    assert.equal(bad.body.error.field, 'cutoffSeconds');
    assert.equal((await stack.database.db('maintenance_windows').where({ id: w.id }).first()).cutoff_seconds, 600);
    assert.match((await handle.describe()).state.note ?? '', /cutoff 600s/);

    const paused = await stack.http('PATCH', `/v1/windows/${w.id}`, { body: { paused: true } });
    assert.equal(paused.body.window.paused, true);
    await waitFor('the Schedule to be paused', async () => (await handle.describe()).state.paused);
  });

  it('GET /v1/windows lists every window with its Schedule id', async () => {
    const agentId = await stack.registerOffline('list-host');
    const made = [
      await createWindow({
        ...NOT_BEFORE_2030,
        name: 'list a',
        targets: { agentIds: [agentId] },
        recurrence: { everySeconds: 3600 },
      }),
      await createWindow({
        ...NOT_BEFORE_2030,
        name: 'list b',
        targets: { agentIds: [agentId] },
        recurrence: { everySeconds: 7200 },
      }),
    ];
    const r = await stack.http('GET', '/v1/windows');
    assert.equal(r.status, 200);
    const listed = r.body.windows.filter((x: any) => made.some((m) => m.id === x.id));
    assert.deepEqual(
      listed.map((x: any) => [x.name, x.scheduleId, x.recurrence]),
      made.map((m) => [m.name, `window.${m.id}`, m.recurrence]),
    );
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
      // No id leaves a refused request, so the Schedule cannot be described by id; the listing is
      // eventually consistent. A marker window made afterwards is the event to wait for: once its
      // Schedule is listed, one made before it by the refused request would be listed too.
      const marker = await createWindow({
        ...NOT_BEFORE_2030,
        name: `marker after ${name}`,
        targets: { agentIds: [agentId] },
        recurrence: { everySeconds: 3600 },
      });
      const notes = await waitFor('the marker Schedule in the listing', async () => {
        const all: string[] = [];
        for await (const schedule of stack.temporal.schedule.list()) all.push(schedule.state.note ?? '');
        return all.some((n) => n.startsWith(`marker after ${name}`)) && all;
      });
      assert.deepEqual(
        notes.filter((n) => n.startsWith(name)),
        [],
        'no orphan Schedule for the refused window',
      );
      assert.equal((await stack.http('DELETE', `/v1/windows/${marker.id}`)).status, 204);
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
