/**
 * Rollouts (issue 12, docs/rollouts.md) on a real stack: 20 real agent processes with fixture
 * scripts, labelled role=web (10) and role=db (10) in the database (the labels endpoint is
 * another part of the issue). Start and end times per host come from the rollout's record
 * (target started_at, the run's finished_at), which is what the concurrency checks read.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { fixture } from '../support/fixture';
import { replayHistory, Stack, type TestAgent } from '../support/stack';

const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security'];
const ENDED = ['halted', 'aborted', 'completed'];

describe('rollouts: waves, concurrency, one error budget, pause/resume/abort', () => {
  const stack = new Stack({ approvalMs: 60_000, agentPickupMs: 30_000, scriptMs: 60_000 });
  const web: TestAgent[] = [];
  const dbHosts: TestAgent[] = [];

  before(async () => {
    await stack.start();
    // Five at a time: twenty agent processes at once starve a 2-core machine.
    const names = [
      ...Array.from({ length: 10 }, (_, i) => `web-${String(i + 1).padStart(2, '0')}`),
      ...Array.from({ length: 10 }, (_, i) => `db-${String(i + 1).padStart(2, '0')}`),
    ];
    for (let i = 0; i < names.length; i += 5) {
      const started = await Promise.all(names.slice(i, i + 5).map((n) => stack.startAgent(n, PLAN)));
      for (const a of started) (a.id.startsWith('web') ? web : dbHosts).push(a);
    }
    web.sort((a, b) => a.id.localeCompare(b.id));
    await stack.database
      .db('agents')
      .whereIn(
        'id',
        web.map((a) => a.id),
      )
      .update({ labels: { role: 'web' } });
    await stack.database
      .db('agents')
      .whereIn(
        'id',
        dbHosts.map((a) => a.id),
      )
      .update({ labels: { role: 'db' } });
  });
  after(() => stack.stop());

  const start = async (body: Record<string, unknown>) => {
    const r = await stack.http('POST', '/v1/rollouts', { body: { mode: 'apply', approval: 'auto', ...body } });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.rollout;
  };
  const show = async (id: string) => (await stack.http('GET', `/v1/rollouts/${id}`)).body.rollout;
  const ended = (id: string, timeoutMs = 180_000) =>
    stack.waitFor(
      `rollout ${id} to end`,
      async () => {
        const r = await show(id);
        return ENDED.includes(r.state) && r.hosts.every((h: any) => h.runId === null || h.outcome !== null) && r;
      },
      timeoutMs,
    );
  /** Most runs of the rollout that were alive at one moment, from the recorded start and end times. */
  const maxOverlap = (hosts: any[]) => {
    const edges = hosts
      .filter((h) => h.startedAt)
      .flatMap((h) => [
        { t: Date.parse(h.startedAt), d: 1 },
        { t: Date.parse(h.finishedAt), d: -1 },
      ])
      .sort((a, b) => a.t - b.t || a.d - b.d);
    let now = 0;
    let most = 0;
    for (const e of edges) most = Math.max(most, (now += e.d));
    return most;
  };
  const reset = () => {
    for (const a of [...web, ...dbHosts])
      for (const f of ['fail-apply', 'delay-apply', 'delay-dry-run']) fixture(a).remove(f);
  };

  it('a rollout over role=web touches only web hosts; the canary ends before the rest start, never more than 5 at once', async () => {
    reset();
    for (const a of web) fixture(a).set('delay-apply', 1);
    const r = await start({
      targets: { selector: 'role=web' },
      canary: { count: 2 },
      maxConcurrency: 5,
      name: 'web fleet',
    });
    assert.deepEqual(
      r.hosts.map((h: any) => h.agentId).sort(),
      web.map((a) => a.id),
    );
    assert.equal(r.canaryHosts, 2);
    const done = await ended(r.id);
    assert.equal(done.state, 'completed', JSON.stringify(done));
    assert.ok(done.hosts.every((h: any) => h.outcome === 'completed'));
    for (const a of dbHosts) assert.deepEqual(fixture(a).calls(), [], `${a.id} was never touched`);
    const dbRuns = await stack.database.db('patch_runs').whereIn(
      'agent_id',
      dbHosts.map((a) => a.id),
    );
    assert.equal(dbRuns.length, 0);
    for (const a of web) assert.ok(fixture(a).applied(), `${a.id} applied`);

    const canary = done.hosts.filter((h: any) => h.wave === 1);
    const rest = done.hosts.filter((h: any) => h.wave === 2);
    assert.equal(canary.length, 2);
    assert.equal(rest.length, 8);
    const canaryEnd = Math.max(...canary.map((h: any) => Date.parse(h.finishedAt)));
    const restStart = Math.min(...rest.map((h: any) => Date.parse(h.startedAt)));
    assert.ok(canaryEnd <= restStart, `canary ended ${canaryEnd}, rest started ${restStart}`);
    const most = maxOverlap(done.hosts);
    assert.ok(most <= 5, `at most 5 at once, saw ${most}`);
    assert.ok(most >= 2, `the rest ran side by side (saw ${most})`);
    assert.deepEqual(
      done.waves.map((w: any) => [w.kind, w.hosts, w.finished, w.failed]),
      [
        ['canary', 2, 2, 0],
        ['rest', 8, 8, 0],
      ],
    );
    assert.deepEqual(done.budget, { allowed: 0, spent: 0, left: 0 });

    // The live summary (query) says the same; the history replays against today's code.
    const q = await stack.temporal.workflow.getHandle(r.id).query<any>('summary');
    assert.equal(q.state, 'completed');
    assert.equal(q.total, 10);
    await replayHistory(stack.temporal, r.id);
    const audit = await stack.database.db('audit_log').where({ subject: r.id }).orderBy('seq');
    assert.deepEqual(
      audit.map((e: any) => e.kind),
      ['rollout.created', 'rollout.completed'],
    );
    const list = await stack.http('GET', '/v1/rollouts');
    assert.equal(list.body.rollouts[0].id, r.id);
    assert.deepEqual(list.body.rollouts[0].progress, { hosts: 10, started: 10, finished: 10 });
  });

  it('the error budget is counted across waves: the third failure halts, however the failures fall', async () => {
    const ids = web.map((a) => a.id);
    // [failing hosts (positions), expected started hosts]: one canary failure + two later; all three later.
    const cases: [number[], number][] = [
      [[0, 3, 5], 6],
      [[2, 3, 4], 5],
    ];
    for (const [failing, started] of cases) {
      reset();
      for (const i of failing) fixture(web[i]).set('fail-apply', 100);
      const r = await start({
        targets: { agentIds: ids },
        canary: { count: 2 },
        maxConcurrency: 1,
        maxFailures: { count: 2 },
      });
      const done = await ended(r.id);
      assert.equal(done.state, 'halted', JSON.stringify(done));
      assert.match(done.stateReason, /3 failed hosts exceed maxFailures \(2 allowed\)/);
      assert.deepEqual(done.budget, { allowed: 2, spent: 3, left: 0 });
      const ran = done.hosts.filter((h: any) => h.runId !== null);
      assert.equal(ran.length, started, `hosts ${failing.join(',')} failing: ${started} started`);
      const third = Math.max(
        ...ran.filter((h: any) => h.outcome === 'failed').map((h: any) => Date.parse(h.finishedAt)),
      );
      assert.ok(
        ran.every((h: any) => Date.parse(h.startedAt) <= third),
        'nothing started after the third failure',
      );
      assert.deepEqual(
        done.hosts.map((h: any, i: number) =>
          h.runId === null ? 'not-started' : failing.includes(i) ? h.outcome === 'failed' : h.outcome,
        ),
        done.hosts.map((_: any, i: number) =>
          i >= started ? 'not-started' : failing.includes(i) ? true : 'completed',
        ),
      );
    }
  });

  it('a canary failure beyond the budget halts before the second wave', async () => {
    reset();
    fixture(web[0]).set('fail-apply', 100);
    const r = await start({ targets: { selector: 'role=web' }, canary: { percent: 20 }, maxConcurrency: 5 });
    assert.equal(r.canaryHosts, 2);
    const done = await ended(r.id);
    assert.equal(done.state, 'halted');
    assert.deepEqual(
      done.hosts.filter((h: any) => h.runId !== null).map((h: any) => h.wave),
      [1, 1],
    );
    assert.equal(done.waves[1].started, 0);
  });

  it('pause stops new hosts while running ones finish; resume continues to the end', async () => {
    reset();
    for (const a of web) fixture(a).set('delay-apply', 2);
    const r = await start({ targets: { agentIds: web.slice(0, 6).map((a) => a.id) }, maxConcurrency: 2 });
    await stack.waitFor(
      'two hosts started',
      async () => (await show(r.id)).hosts.filter((h: any) => h.runId).length >= 2,
    );
    const paused = await stack.http('POST', `/v1/rollouts/${r.id}/pause`, { body: {} });
    assert.equal(paused.status, 202, JSON.stringify(paused.body));
    await stack.waitFor('paused', async () => (await show(r.id)).state === 'paused');
    const running = await stack.waitFor('the running hosts to finish', async () => {
      const s = await show(r.id);
      return s.hosts.filter((h: any) => h.runId).every((h: any) => h.outcome !== null) && s;
    });
    const startedWhilePaused = running.hosts.filter((h: any) => h.runId).length;
    assert.ok(startedWhilePaused < 6, 'not every host started');
    await new Promise((res) => setTimeout(res, 3000));
    const still = await show(r.id);
    assert.equal(still.hosts.filter((h: any) => h.runId).length, startedWhilePaused, 'no host started while paused');
    assert.equal(still.state, 'paused');

    assert.equal((await stack.http('POST', `/v1/rollouts/${r.id}/resume`, { body: {} })).status, 202);
    const done = await ended(r.id);
    assert.equal(done.state, 'completed');
    assert.ok(done.hosts.every((h: any) => h.outcome === 'completed'));
    assert.ok(maxOverlap(done.hosts) <= 2);
    const kinds = (await stack.database.db('audit_log').where({ subject: r.id }).orderBy('seq')).map((e: any) => [
      e.kind,
      e.actor,
    ]);
    assert.deepEqual(kinds, [
      ['rollout.created', 'alice'],
      ['rollout.pause-requested', 'alice'],
      ['rollout.paused', 'alice'],
      ['rollout.resume-requested', 'alice'],
      ['rollout.running', 'alice'],
      [`rollout.completed`, `workflow:${r.id}`],
    ]);
    const again = await stack.http('POST', `/v1/rollouts/${r.id}/pause`, { body: {} });
    assert.equal(again.status, 409, 'an ended rollout cannot be paused');
  });

  it('abort lets applying hosts finish, cancels the ones not applying yet, starts nothing else', async () => {
    reset();
    const [a1, a2, planning] = web;
    fixture(a1).set('delay-apply', 4);
    fixture(a2).set('delay-apply', 4);
    fixture(planning).set('delay-dry-run', 20);
    const before1 = fixture(a1).calls().length;
    const before2 = fixture(a2).calls().length;
    const beforeP = fixture(planning).calls().length;
    const r = await start({ targets: { agentIds: web.slice(0, 6).map((a) => a.id) }, maxConcurrency: 3 });
    await fixture(a1).started('apply', before1 + 2);
    await fixture(a2).started('apply', before2 + 2);
    await fixture(planning).started('dry-run', beforeP + 1);
    const abort = await stack.http('POST', `/v1/rollouts/${r.id}/abort`, { body: {} });
    assert.equal(abort.status, 202, JSON.stringify(abort.body));
    const done = await ended(r.id);
    assert.equal(done.state, 'aborted');
    assert.equal(done.stateReason, 'aborted by alice');
    const byAgent = new Map(done.hosts.map((h: any) => [h.agentId, h]));
    assert.equal((byAgent.get(a1.id) as any).outcome, 'completed', 'an apply in progress finished');
    assert.equal((byAgent.get(a2.id) as any).outcome, 'completed');
    assert.equal((byAgent.get(planning.id) as any).outcome, 'cancelled');
    assert.ok(
      !fixture(planning)
        .calls()
        .slice(beforeP)
        .some((c) => c.startsWith('apply')),
      'the planning host never applied',
    );
    assert.deepEqual(
      done.hosts.slice(3).map((h: any) => h.runId),
      [null, null, null],
      'no host started after the abort',
    );
    const run = await stack.http('GET', `/v1/runs/${(byAgent.get(a1.id) as any).runId}`);
    assert.match(run.body.run.failureReason ?? '', /cancel requested during apply/);
  });

  it('approval required: each host waits for its own approval, and four-eyes keeps the rollout creator from giving it', async () => {
    reset();
    const host = web[9];
    await stack.database.db('agents').where({ id: host.id }).update({ four_eyes: true });
    const r = await start({ targets: { agentIds: [host.id] }, approval: 'required' });
    const runId = await stack.waitFor('the host run', async () => (await show(r.id)).hosts[0].runId as string | null);
    const waiting = await stack.waitForRun(runId, (x) => x.phase === 'awaiting-approval');
    const byCreator = await stack.approve(runId, waiting.planHash);
    assert.equal(byCreator.status, 403, JSON.stringify(byCreator.body));
    const { at, keyId, signature } = stack.signApproval(runId, waiting.planHash, 'bob');
    const bob = await stack.http('POST', '/v1/users/bob/tokens', { body: { note: 'test' } });
    const ok = await stack.http('POST', `/v1/runs/${runId}/approve`, {
      token: bob.body.token,
      body: { planHash: waiting.planHash, at, keyId, signature },
    });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const done = await ended(r.id);
    assert.equal(done.state, 'completed');
    assert.equal(done.hosts[0].outcome, 'completed');
    await stack.database.db('agents').where({ id: host.id }).update({ four_eyes: false });
  });

  it('refuses a rollout whose targets resolve to nothing, or a body it cannot read, naming the field', async () => {
    const none = await stack.http('POST', '/v1/rollouts', {
      body: { targets: { selector: 'role=cache' }, mode: 'apply', approval: 'auto' },
    });
    assert.equal(none.status, 400);
    assert.equal(none.body.error.field, 'targets');
    assert.match(none.body.error.message, /no accepted agent matches/);
    const bad = await stack.http('POST', '/v1/rollouts', {
      body: { targets: { selector: 'role=web' }, mode: 'apply', approval: 'auto', maxConcurrency: 0 },
    });
    assert.equal(bad.status, 400);
    assert.match(bad.body.error.message, /maxConcurrency/);
    const empty = await stack.http('POST', '/v1/rollouts', { body: { targets: {}, mode: 'apply', approval: 'auto' } });
    assert.equal(empty.status, 400);
    assert.match(empty.body.error.message, /agentIds or selector/);
    const unknown = await stack.http('POST', '/v1/rollouts', {
      body: { targets: { agentIds: ['nobody-here'] }, mode: 'apply', approval: 'auto' },
    });
    assert.equal(unknown.status, 400);
    assert.equal(unknown.body.error.field, 'targets.agentIds');
  });
});
