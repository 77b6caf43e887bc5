/**
 * Issue 12 for maintenance windows, on a real stack (Temporal, PostgreSQL, real agent processes
 * with fixture scripts): windows that target a label selector, resolved at each firing; windows
 * whose firing starts a rollout (waves, concurrency, the window's cutoff); per-window and
 * per-rollout reboot timeouts. Labels are set through PUT /v1/agents/:id/labels, windows fired
 * through their Schedule (POST …/trigger), as an admin would.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { fourEyesExcluded } from '../../db/runs';
import { fixture } from '../support/fixture';
import { replayHistory, Stack, type TestAgent } from '../support/stack';

const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security'];
/** Far enough ahead that only explicit triggers fire these windows during the test. */
const NOT_BEFORE_2030 = { startAt: '2030-01-01T00:00:00Z' };
const ENDED = ['halted', 'aborted', 'completed'];

describe('windows: label selectors resolved at each firing, window-started rollouts, reboot timeouts', () => {
  const stack = new Stack({ approvalMs: 60_000, agentPickupMs: 30_000, scriptMs: 60_000 });
  const web: TestAgent[] = [];
  const dbHosts: TestAgent[] = [];
  let late: TestAgent;

  const label = async (a: TestAgent, labels: Record<string, string>) => {
    const r = await stack.http('PUT', `/v1/agents/${a.id}/labels`, { body: { labels } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
  };

  before(async () => {
    await stack.start();
    // Three at a time: many agent processes at once starve a 2-core machine. Host names (= agent
    // ids = task queues) of their own: other test files run at the same time on the same Temporal.
    const names = ['wsel-web-01', 'wsel-web-02', 'wsel-web-03', 'wsel-db-01', 'wsel-db-02', 'wsel-late-01'];
    for (let i = 0; i < names.length; i += 3) {
      const started = await Promise.all(names.slice(i, i + 3).map((n) => stack.startAgent(n, PLAN)));
      for (const a of started)
        if (a.id.startsWith('wsel-web')) web.push(a);
        else if (a.id.startsWith('wsel-db')) dbHosts.push(a);
        else late = a;
    }
    web.sort((a, b) => a.id.localeCompare(b.id));
    for (const a of web) await label(a, { role: 'web' });
    for (const a of dbHosts) await label(a, { role: 'db' });
    await label(late, { role: 'cache' });
  });
  after(() => stack.stop());

  const showWindow = async (id: string) => (await stack.http('GET', `/v1/windows/${id}`)).body.window;
  const showRollout = async (id: string) => (await stack.http('GET', `/v1/rollouts/${id}`)).body.rollout;
  const rolloutEnded = (id: string, timeoutMs = 180_000) =>
    stack.waitFor(
      `rollout ${id} to end`,
      async () => {
        const r = await showRollout(id);
        return ENDED.includes(r.state) && r.hosts.every((h: any) => h.runId === null || h.outcome !== null) && r;
      },
      timeoutMs,
    );
  /** The workflow id of the latest firing (the Schedule appends the time to `window.<id>`). */
  let lastFiringId = '';
  /** Fire the window through its Schedule and wait for the firing workflow's report. */
  const fire = async (windowId: string, timeoutMs = 180_000): Promise<any> => {
    const handle = stack.temporal.schedule.getHandle(`window.${windowId}`);
    const runIdOf = (a: { action: { workflow: { firstExecutionRunId: string } } }) =>
      a.action.workflow.firstExecutionRunId;
    const seen = new Set((await handle.describe()).info.recentActions.map(runIdOf));
    const r = await stack.http('POST', `/v1/windows/${windowId}/trigger`);
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const action = await stack.waitFor('the firing', async () =>
      (await handle.describe()).info.recentActions.find((a) => !seen.has(runIdOf(a))),
    );
    lastFiringId = action.action.workflow.workflowId;
    const run = stack.temporal.workflow.getHandle(
      action.action.workflow.workflowId,
      action.action.workflow.firstExecutionRunId,
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`firing of ${windowId} did not end in ${timeoutMs} ms`)), timeoutMs);
    });
    return Promise.race([run.result(), timeout]).finally(() => clearTimeout(timer));
  };
  /** The input a run's workflow was started with (what patchRun was told). */
  const runInput = async (runId: string) => {
    const [first] = (await stack.temporal.workflow.getHandle(runId).fetchHistory()).events ?? [];
    const payload = first.workflowExecutionStartedEventAttributes!.input!.payloads![0];
    return JSON.parse(Buffer.from(payload.data!).toString());
  };
  const reset = () => {
    for (const a of [...web, ...dbHosts, late]) for (const f of ['fail-apply', 'delay-apply']) fixture(a).remove(f);
  };

  it('a window over role=web touches only web agents, and an agent labelled role=web later is in the next firing', async () => {
    reset();
    const w = await stack.createWindow({
      ...NOT_BEFORE_2030,
      targets: { agentIds: [], selector: 'role=web' },
      recurrence: { everySeconds: 3600 },
    });
    assert.deepEqual(w.targets, { agentIds: [], selector: 'role=web' });
    assert.deepEqual(w.warnings, []);
    const first = await fire(w.id);
    assert.deepEqual(
      first.runs.map((r: any) => r.agentId).sort(),
      web.map((a) => a.id),
    );
    assert.ok(
      first.runs.every((r: any) => r.outcome === 'completed'),
      JSON.stringify(first.runs),
    );
    for (const a of [...dbHosts, late]) assert.deepEqual(fixture(a).calls(), [], `${a.id} was never touched`);
    const shown = await showWindow(w.id);
    assert.equal(shown.resolvedTargets.length, 1);
    assert.equal(shown.resolvedTargets[0].selector, 'role=web');
    assert.deepEqual(
      [...shown.resolvedTargets[0].agentIds].sort(),
      web.map((a) => a.id),
    );

    // Labelled after the window was made: the next firing resolves the selector again.
    await label(late, { role: 'web' });
    const second = await fire(w.id);
    const expected = [...web, late].map((a) => a.id).sort();
    assert.deepEqual(second.runs.map((r: any) => r.agentId).sort(), expected);
    assert.notEqual(second.startsAt, first.startsAt);
    const rows = await stack.database.db('window_firings').where({ window_id: w.id }).orderBy('resolved_at');
    assert.deepEqual(
      rows.map((r: any) => [...r.agent_ids].sort()),
      [web.map((a) => a.id), expected],
    );
    const runs = await stack.windowRuns(w.id);
    assert.deepEqual(
      runs.filter((r) => r.agent_id === late.id).map((r) => r.window_start.toISOString()),
      [second.startsAt],
      'the late agent ran in the second firing only',
    );
    await label(late, { role: 'cache' });
    assert.equal((await stack.http('DELETE', `/v1/windows/${w.id}`)).status, 204);
  });

  it('a window with a rollout: its firing starts a rollout bound to the window, the canary ends before the rest, at most 2 at once', async () => {
    reset();
    for (const a of web) fixture(a).set('delay-apply', 1);
    const lateCalls = fixture(late).calls().length;
    const w = await stack.createWindow({
      ...NOT_BEFORE_2030,
      name: 'web rollout window',
      targets: { agentIds: [], selector: 'role=web' },
      recurrence: { everySeconds: 3600 },
      durationSeconds: 600,
      cutoffSeconds: 60,
      fourEyes: true,
      rollout: { canary: { count: 1 }, maxConcurrency: 2 },
    });
    assert.deepEqual(w.rollout, { canary: { count: 1 }, maxConcurrency: 2, maxFailures: { count: 0 } });
    const report = await fire(w.id);
    assert.equal(report.skipped, null);
    assert.equal(report.rollout.state, 'completed', JSON.stringify(report));
    const rolloutId = report.rollout.rolloutId;
    const done = await rolloutEnded(rolloutId);
    assert.equal(done.createdBy, `window:${w.id}`);
    assert.equal(done.name, 'web rollout window');
    assert.equal(done.mode, 'apply');
    assert.equal(done.canaryHosts, 1);
    assert.equal(done.maxConcurrency, 2);
    assert.equal(done.window.windowId, w.id);
    assert.equal(done.window.startsAt, report.startsAt);
    assert.equal(Date.parse(done.window.applyBy), Date.parse(report.startsAt) + 540_000);
    assert.deepEqual(
      done.hosts.map((h: any) => h.agentId).sort(),
      web.map((a) => a.id),
    );
    assert.ok(
      done.hosts.every((h: any) => h.outcome === 'completed'),
      JSON.stringify(done.hosts),
    );
    const canary = done.hosts.filter((h: any) => h.wave === 1);
    const rest = done.hosts.filter((h: any) => h.wave === 2);
    assert.equal(canary.length, 1);
    assert.ok(
      Date.parse(canary[0].finishedAt) <= Math.min(...rest.map((h: any) => Date.parse(h.startedAt))),
      'the canary finished before the rest started',
    );
    // At most 2 alive at once, from the recorded start and end of each host's run.
    const edges = done.hosts
      .flatMap((h: any) => [
        { t: Date.parse(h.startedAt), d: 1 },
        { t: Date.parse(h.finishedAt), d: -1 },
      ])
      .sort((a: any, b: any) => a.t - b.t || a.d - b.d);
    let alive = 0;
    let most = 0;
    for (const e of edges) most = Math.max(most, (alive += e.d));
    assert.ok(most <= 2, `at most 2 at once, saw ${most}`);
    // Each host's run is the window's: its row (which the run's claim compared) and its input.
    const runIds = done.hosts.map((h: any) => h.runId);
    const rows = await stack.database.db('patch_runs').whereIn('id', runIds);
    for (const r of rows) {
      assert.equal(r.window_id, w.id);
      assert.equal(r.window_start.toISOString(), report.startsAt);
      assert.equal(r.requested_by, `rollout:${rolloutId}`);
      // Four-eyes still keeps the window's creator (alice) from approving its runs.
      assert.ok((await fourEyesExcluded(stack.database.db, r.id)).includes('alice'));
    }
    const input = await runInput(runIds[0]);
    assert.equal(input.window.windowId, w.id);
    assert.equal(input.window.startsAt, Date.parse(report.startsAt));
    assert.ok(input.timeouts.agentPickupMs <= 540_000, `pickup bound by the cutoff: ${input.timeouts.agentPickupMs}`);
    const shown = await showWindow(w.id);
    assert.equal(shown.resolvedTargets[0].rolloutId, rolloutId);
    // The firing (the rollout's parent) and the rollout replay against today's code.
    await replayHistory(stack.temporal, lastFiringId);
    await replayHistory(stack.temporal, rolloutId);
    for (const a of dbHosts) assert.deepEqual(fixture(a).calls(), [], `${a.id} was never touched`);
    assert.equal(fixture(late).calls().length, lateCalls, 'the agent no longer labelled role=web was not touched');
    assert.equal((await stack.http('DELETE', `/v1/windows/${w.id}`)).status, 204);
  });

  it("a window's rollout starts no host after the cutoff: it ends halted, saying how many never started", async () => {
    reset();
    // applyBy is 10 s after the window opens; the first host's apply alone takes 15 s and only one
    // host runs at a time, so the other two cannot start before the cutoff however fast it goes.
    fixture(web[0]).set('delay-apply', 15);
    const callsBefore = web.map((a) => fixture(a).calls().length);
    const w = await stack.createWindow({
      ...NOT_BEFORE_2030,
      targets: { agentIds: web.map((a) => a.id) },
      recurrence: { everySeconds: 3600 },
      durationSeconds: 40,
      cutoffSeconds: 30,
      rollout: { maxConcurrency: 1 },
    });
    const report = await fire(w.id);
    assert.equal(report.rollout.state, 'halted', JSON.stringify(report));
    const done = await rolloutEnded(report.rollout.rolloutId);
    assert.equal(done.state, 'halted');
    assert.equal(done.stateReason, 'window cutoff reached: 2 hosts not started');
    await replayHistory(stack.temporal, done.id);
    assert.deepEqual(
      done.hosts.map((h: any) => h.runId !== null),
      [true, false, false],
    );
    assert.deepEqual(
      web.slice(1).map((a) => fixture(a).calls().length),
      callsBefore.slice(1),
      'the hosts not started were never asked to plan',
    );
    assert.equal((await stack.http('DELETE', `/v1/windows/${w.id}`)).status, 204);
  });

  it('refuses a rollout on a pre-approved window (saying why) and bad rollout shapes; allows a selector that matches nothing yet, with a warning', async () => {
    const base = {
      name: 'refused',
      targets: { agentIds: [], selector: 'role=web' },
      recurrence: { everySeconds: 3600 },
      timezone: 'UTC',
      durationSeconds: 600,
      cutoffSeconds: 60,
      approval: 'auto',
      ...NOT_BEFORE_2030,
    };
    const post = (body: Record<string, unknown>) => stack.http('POST', '/v1/windows', { body: { ...base, ...body } });
    const pre = await post({ approval: 'pre-approved', rollout: { maxConcurrency: 2 } });
    assert.equal(pre.status, 400, JSON.stringify(pre.body));
    assert.equal(pre.body.error.field, 'rollout');
    assert.match(pre.body.error.message, /pre-approved window plans every host ahead of the window start/);
    for (const [rollout, field] of [
      [{ maxConcurrency: 0 }, 'rollout.maxConcurrency'],
      [{ canary: { percent: 0 } }, 'rollout.canary.percent'],
      [{ maxFailures: { count: -1 } }, 'rollout.maxFailures.count'],
      [{ maxConcurrency: 2, waves: 3 }, 'rollout'],
    ] as const) {
      const r = await post({ rollout });
      assert.equal(r.status, 400, `${JSON.stringify(rollout)}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.field, field, JSON.stringify(r.body));
    }
    const noTargets = await post({ targets: { agentIds: [] } });
    assert.equal(noTargets.status, 400);
    assert.match(noTargets.body.error.message, /at least one agent, selector or container/);
    const badSelector = await post({ targets: { selector: 'role=' + 'x'.repeat(70) } });
    assert.equal(badSelector.status, 400);
    assert.equal(badSelector.body.error.field, 'targets.selector');
    const badTimeout = await post({ rebootTimeoutSeconds: 30 });
    assert.equal(badTimeout.status, 400);
    assert.equal(badTimeout.body.error.field, 'rebootTimeoutSeconds');
    assert.deepEqual(await stack.database.db('maintenance_windows').where({ name: 'refused' }), []);

    // Made as auto with a rollout, it cannot become pre-approved later either.
    const ok = await stack.createWindow({ ...base, name: 'rollout then pre', rollout: { maxConcurrency: 2 } });
    const patched = await stack.http('PATCH', `/v1/windows/${ok.id}`, { body: { approval: 'pre-approved' } });
    assert.equal(patched.status, 400, JSON.stringify(patched.body));
    assert.match(patched.body.error.message, /pre-approved/);
    assert.equal((await stack.http('DELETE', `/v1/windows/${ok.id}`)).status, 204);

    const empty = await stack.createWindow({ ...base, name: 'for hosts to come', targets: { selector: 'role=mail' } });
    assert.deepEqual(empty.warnings, [
      'targets.selector "role=mail" matches no agent now: each firing resolves it again',
    ]);
    assert.deepEqual((await showWindow(empty.id)).warnings, empty.warnings);
    assert.equal((await stack.http('DELETE', `/v1/windows/${empty.id}`)).status, 204);
  });

  it("rebootTimeoutSeconds of a window and of a rollout is their runs' reboot timeout; without it, the default as before", async () => {
    reset();
    const w = await stack.createWindow({
      ...NOT_BEFORE_2030,
      targets: { agentIds: [dbHosts[0].id] },
      recurrence: { everySeconds: 3600 },
      reboot: 'if-needed',
      rebootTimeoutSeconds: 120,
    });
    assert.equal(w.rebootTimeoutSeconds, 120);
    const fired = await fire(w.id);
    assert.equal(fired.runs.length, 1);
    assert.equal((await runInput(fired.runs[0].runId)).timeouts.rebootMs, 120_000);
    assert.equal((await stack.http('DELETE', `/v1/windows/${w.id}`)).status, 204);

    const rolloutRun = async (body: Record<string, unknown>) => {
      const r = await stack.http('POST', '/v1/rollouts', {
        body: { targets: { agentIds: [dbHosts[1].id] }, mode: 'dry-run', approval: 'auto', ...body },
      });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      const done = await rolloutEnded(r.body.rollout.id);
      return { rollout: done, input: await runInput(done.hosts[0].runId) };
    };
    const own = await rolloutRun({ reboot: 'if-needed', rebootTimeoutSeconds: 300 });
    assert.equal(own.rollout.rebootTimeoutSeconds, 300);
    assert.equal(own.input.timeouts.rebootMs, 300_000);
    const plain = await rolloutRun({});
    assert.equal(plain.rollout.rebootTimeoutSeconds, null);
    assert.equal(plain.input.timeouts.rebootMs, undefined, 'an API rollout without one runs as before');
    const bad = await stack.http('POST', '/v1/rollouts', {
      body: { targets: { agentIds: [dbHosts[1].id] }, mode: 'apply', approval: 'auto', rebootTimeoutSeconds: 86401 },
    });
    assert.equal(bad.status, 400);
    assert.match(bad.body.error.message, /rebootTimeoutSeconds/);
  });
});
