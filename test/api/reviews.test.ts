/**
 * The review desk's API (issue 17) against a real stack: real agents whose fixture plans the test
 * sets, real workflows, PostgreSQL. Runs with the same plan form one group; approving the group
 * approves each run with its own signed statement; a run whose plan is not the group's refuses;
 * compliance follows what the runs did.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Stack, type TestAgent } from '../support/stack';
import { fixture } from '../support/fixture';

const SECURITY = 'openssl amd64 3.0.15-1 3.0.16-1 bookworm-security';
const CURL = 'curl amd64 7.88.1-10 7.88.1-11 bookworm';
const PLAN = [SECURITY, CURL];
const KERNEL = 'linux-image-amd64 amd64 6.1.0-1 6.1.0-2 bookworm';

describe('the review desk: runs grouped by plan, decided as a group, each run deciding itself', () => {
  const stack = new Stack();
  let web: TestAgent[] = [];
  let odd: TestAgent;
  let failing: TestAgent;
  const runOf = new Map<string, string>();

  const startRun = async (agentId: string, approval = 'required') => {
    const r = await stack.http('POST', '/v1/runs', { body: { agentId, mode: 'apply', approval } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return r.body.run.id as string;
  };
  const awaiting = (id: string) => stack.waitForRun(id, (r) => r.phase === 'awaiting-approval' || r.outcome !== null);
  const signedFor = (runId: string, planHash: string, by = 'alice') => {
    const { at, keyId, signature } = stack.signApproval(runId, planHash, by);
    return { runId, at, keyId, signature };
  };

  before(async () => {
    await stack.start();
    // Three web hosts with the same plan (the third also has a kernel update its exception holds
    // back, so its plan is still the same), one host with another plan, one whose apply fails.
    [web, odd, failing] = await Promise.all([
      Promise.all([
        stack.startAgent('web-1', PLAN),
        stack.startAgent('web-2', PLAN),
        stack.startAgent('web-3', [...PLAN, KERNEL]),
      ]),
      stack.startAgent('odd-1', [
        'openssl amd64 3.0.15-1 3.0.17-1 bookworm-security',
        // The manager names bash a security fix though its repository's name does not say so.
        'bash amd64 5.2-1 5.2-2 bookworm true',
      ]),
      stack.startAgent('fail-1', PLAN),
    ]);
    const ex = await stack.http('POST', `/v1/agents/${web[2].id}/exceptions`, {
      body: { package: 'linux-image-*', reason: 'kernel needs a change ticket' },
    });
    assert.equal(ex.status, 201, JSON.stringify(ex.body));
    fixture(web[1]).set('reboot-required', 'libc6 upgraded');
    fixture(failing).set('fail-apply', 100);
    for (const a of [...web, odd]) runOf.set(a.id, await startRun(a.id));
    await Promise.all([...runOf.values()].map(awaiting));
  });
  after(() => stack.stop());

  it('GET /v1/reviews groups the waiting runs by plan: hosts, plan, held packages, reboot count, oldest waiting', async () => {
    const r = await stack.http('GET', '/v1/reviews');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.runs, 4);
    assert.equal(r.body.groups.length, 2);
    const webGroup = r.body.groups.find((g: any) => g.hosts === 3);
    assert.ok(webGroup, JSON.stringify(r.body.groups));
    assert.deepEqual(webGroup.runs.map((x: any) => x.hostname).sort(), ['web-1', 'web-2', 'web-3']);
    assert.deepEqual(
      webGroup.plan.map((p: any) => [p.name, p.current, p.candidate, p.security]),
      [
        ['curl', '7.88.1-10', '7.88.1-11', false],
        ['openssl', '3.0.15-1', '3.0.16-1', true],
      ],
    );
    assert.equal(webGroup.securityPackages, 1);
    const oddGroup = r.body.groups.find((g: any) => g.hosts === 1);
    assert.deepEqual(
      oddGroup.plan.map((p: any) => [p.name, p.security]),
      [
        ['bash', true],
        ['openssl', true],
      ],
      "bash is a security fix by the manager's word, openssl by its repository",
    );
    assert.equal(oddGroup.securityPackages, 2);
    assert.deepEqual(
      webGroup.held.map((h: any) => [h.name, h.runs]),
      [['linux-image-amd64', 1]],
    );
    const third = webGroup.runs.find((x: any) => x.agentId === web[2].id);
    assert.deepEqual(third.exclusions, ['linux-image-*']);
    assert.deepEqual(
      third.held.map((h: any) => h.name),
      ['linux-image-amd64'],
    );
    assert.equal(webGroup.rebootRequired, 1, 'web-2 reported a reboot required when it planned');
    assert.equal(webGroup.runs.find((x: any) => x.agentId === web[1].id).rebootReason, 'libc6 upgraded');
    const waited = webGroup.runs.map((x: any) => Date.parse(x.waitingSince));
    assert.equal(Date.parse(webGroup.oldestWaitingSince), Math.min(...waited));
    for (const run of webGroup.runs) assert.equal(run.id, runOf.get(run.agentId));
  });

  it('the diff of two plans names the packages only one of them has and the versions that differ', async () => {
    const r = await stack.http(
      'GET',
      `/v1/reviews/diff?a=${encodeURIComponent(runOf.get(web[0].id)!)}&b=${encodeURIComponent(runOf.get(odd.id)!)}`,
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(
      r.body.onlyInA.map((p: any) => p.name),
      ['curl'],
    );
    assert.deepEqual(
      r.body.onlyInB.map((p: any) => p.name),
      ['bash'],
    );
    assert.deepEqual(
      r.body.differing.map((d: any) => [d.name, d.a.candidate, d.b.candidate]),
      [['openssl', '3.0.16-1', '3.0.17-1']],
    );
    assert.equal(r.body.same, 0);
    const unknown = await stack.http(
      'GET',
      `/v1/reviews/diff?a=${runOf.get(web[0].id)}&b=patch-run.x.${'0'.repeat(26)}`,
    );
    assert.equal(unknown.status, 404);
    assert.equal((await stack.http('GET', '/v1/reviews/diff?a=nope')).status, 400);
  });

  it('a run whose plan is not the group’s refuses the group approval (drift), and nothing is approved', async () => {
    const webHash = (await stack.http('GET', `/v1/runs/${runOf.get(web[0].id)}`)).body.run.planHash;
    const oddRun = runOf.get(odd.id)!;
    const r = await stack.http('POST', `/v1/reviews/${webHash}/approve`, {
      body: { approvals: [signedFor(oddRun, webHash)] },
    });
    assert.equal(r.status, 409, JSON.stringify(r.body));
    assert.match(r.body.error.message, /plan drift: run .* plan is [0-9a-f]{64}, not the reviewed/);
    assert.equal((await stack.http('GET', `/v1/runs/${oddRun}`)).body.run.phase, 'awaiting-approval');
    // Unsigned is refused at the boundary, as for one run.
    const unsigned = await stack.http('POST', `/v1/reviews/${webHash}/approve`, {
      body: { approvals: [{ runId: runOf.get(web[0].id) }] },
    });
    assert.equal(unsigned.status, 400);
    const twice = await stack.http('POST', `/v1/reviews/${webHash}/approve`, {
      body: { approvals: [signedFor(runOf.get(web[0].id)!, webHash), signedFor(runOf.get(web[0].id)!, webHash)] },
    });
    assert.equal(twice.status, 400);
    assert.match(twice.body.error.message, /each run at most once/);
  });

  it("a statement signed with another person's key is refused (403) and approves nothing", async () => {
    // bob's key while alice calls: the statement names bob, the API approves as alice.
    const webHash = (await stack.http('GET', `/v1/runs/${runOf.get(web[0].id)}`)).body.run.planHash;
    const r = await stack.http('POST', `/v1/reviews/${webHash}/approve`, {
      body: { approvals: [signedFor(runOf.get(web[0].id)!, webHash, 'bob')] },
    });
    assert.equal(r.status, 403, JSON.stringify(r.body));
    assert.match(r.body.error.message, /refused approval/);
    assert.equal((await stack.http('GET', `/v1/runs/${runOf.get(web[0].id)}`)).body.run.phase, 'awaiting-approval');
  });

  it('approving the group approves each run with its own signed statement, and all three apply', async () => {
    const list = await stack.http('GET', '/v1/reviews');
    const group = list.body.groups.find((g: any) => g.hosts === 3);
    const r = await stack.http('POST', `/v1/reviews/${group.planHash}/approve`, {
      body: { approvals: group.runs.map((x: any) => signedFor(x.id, group.planHash)) },
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.decided.length, 3);
    assert.deepEqual(r.body.refused, []);
    assert.deepEqual(r.body.notIncluded, []);
    for (const agent of web) {
      const run = await stack.waitForOutcome(runOf.get(agent.id)!);
      assert.equal(run.outcome, 'completed', run.failureReason);
      assert.equal(run.approvedBy, 'alice');
      // Each run recorded its own decision: a statement over its own run id.
      assert.equal(run.approvalSignature.runId, run.id);
      assert.equal(run.approvalSignature.planHash, group.planHash);
      assert.ok(run.events.some((e: any) => e.kind === 'approved'));
      assert.ok(fixture(agent).applied());
    }
    const audit = await stack.http('GET', '/v1/audit?kind=run.approved&limit=100');
    const approvedRuns = audit.body.entries.map((e: any) => e.subject);
    for (const agent of web) assert.ok(approvedRuns.includes(runOf.get(agent.id)), 'each run audited its approval');
    const groupAudit = await stack.http('GET', '/v1/audit?kind=review.group-approve&limit=100');
    assert.equal(groupAudit.body.entries.at(-1).detail.approved.length, 3);
    const after = await stack.http('GET', '/v1/reviews');
    assert.equal(after.body.groups.length, 1, 'only the other plan still waits');
  });

  it('rejecting a group needs a reason and records it on each run', async () => {
    const oddRun = runOf.get(odd.id)!;
    const hash = (await stack.http('GET', `/v1/runs/${oddRun}`)).body.run.planHash;
    const none = await stack.http('POST', `/v1/reviews/${hash}/reject`, { body: {} });
    assert.equal(none.status, 400);
    assert.equal(none.body.error.field, 'reason');
    const r = await stack.http('POST', `/v1/reviews/${hash}/reject`, { body: { reason: 'bash needs a test first' } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(
      r.body.decided.map((d: any) => d.runId),
      [oddRun],
    );
    const run = await stack.waitForOutcome(oddRun);
    assert.equal(run.outcome, 'rejected');
    assert.equal(run.rejectReason, 'bash needs a test first');
    assert.equal(fixture(odd).applied(), false);
    const again = await stack.http('POST', `/v1/reviews/${hash}/reject`, { body: { reason: 'again' } });
    assert.equal(again.status, 409, 'nothing waits with that plan any more');
  });

  it('compliance per host and for the fleet follows what the runs did', async () => {
    const failed = await stack.waitForOutcome(await startRun(failing.id, 'auto'));
    assert.equal(failed.outcome, 'failed');
    const offline = await stack.registerOffline('gone-1');
    // An agent that stopped checking in an hour ago.
    await stack.database
      .db('agents')
      .where({ id: offline })
      .update({ last_seen_at: new Date(Date.now() - 3600_000) });

    const r = await stack.http('GET', '/v1/agents');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const c = (id: string) => r.body.agents.find((a: any) => a.id === id).compliance;
    const w1 = c(web[0].id);
    assert.equal(w1.state, 'up-to-date');
    assert.equal(w1.pendingUpgrades, 0);
    assert.ok(w1.lastSuccessfulApplyAt);
    assert.equal(w1.lastRun.outcome, 'completed');
    assert.ok(w1.lastSeenAt);
    const w2 = c(web[1].id);
    assert.equal(w2.rebootRequired, true);
    assert.equal(w2.rebootReason, 'libc6 upgraded');
    assert.ok(Date.parse(w2.rebootRequiredSince) <= Date.parse(w2.lastRun.finishedAt));
    const w3 = c(web[2].id);
    assert.deepEqual(w3.held, ['linux-image-amd64']);
    assert.deepEqual(w3.excluded, ['linux-image-*']);
    const o = c(odd.id);
    assert.equal(o.state, 'pending', 'rejected: its plan is still pending');
    assert.equal(o.pendingUpgrades, 2);
    assert.equal(o.pendingSecurity, 2, "openssl (its repository) and bash (the manager's word)");
    assert.equal(o.lastRun.outcome, 'rejected');
    assert.equal(c(failing.id).state, 'failing');
    assert.equal(c(failing.id).lastSuccessfulApplyAt, null);
    assert.equal(c(offline).state, 'unreachable');
    assert.equal(c(offline).pendingUpgrades, null);

    const s = await stack.http('GET', '/v1/compliance');
    assert.equal(s.status, 200, JSON.stringify(s.body));
    assert.deepEqual(
      [s.body.hosts, s.body.upToDate, s.body.pending, s.body.failing, s.body.unreachable, s.body.pendingReboot],
      [6, 3, 1, 1, 1, 1],
    );
    assert.equal(s.body.pendingSecurityHosts, 2, 'odd-1 and fail-1 still lack openssl from the security repository');
    assert.equal((await stack.http('GET', '/v1/compliance?staleAfterSeconds=1')).status, 400);
  });
});
