import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EXIT_REVOKED } from '../../agent-worker/config';
import { newRunId, resolveRunTimeouts, type PatchRunInput } from '../../contract';
import { insertRunRows } from '../../db/runs';
import { patchRun } from '../../workflows/patch-run';
import { fixture } from '../support/fixture';
import { replayHistory, Stack, TRIGGER_ONLY_WINDOW, type TestAgent } from '../support/stack';
import { until } from '../support/wait';
import { renderLog } from '../../scripts/dev/log-lines';

const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security'];
const OS = { id: 'debian', versionId: '12', family: 'apt' };
/** A script that would outlast every test: only the run's end (or the agent's) stops waiting for it. */
const FOREVER = 300;

/**
 * Enrolment and revocation (issue 13): tokens that expire and run out, agents that wait for an
 * admin, and a revocation that takes effect at once. Real API, PostgreSQL, Temporal and agents.
 */
describe('enrolment tokens, pending agents, accept and revoke', { concurrency: true }, () => {
  const stack = new Stack();
  before(() => stack.start());
  after(() => stack.stop());

  const register = (token: string, hostname: string) =>
    stack.http('POST', '/v1/agents', { token, body: { hostname, os: OS } });
  const startRun = async (agentId: string, body: Record<string, unknown> = {}) => {
    const r = await stack.http('POST', '/v1/runs', { body: { agentId, mode: 'dry-run', ...body } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return r.body.run.id as string;
  };
  /** Whoever polls the agent's activity queue on Temporal right now. */
  const pollers = async (agentId: string) => {
    const d = await stack.temporal.workflowService.describeTaskQueue({
      namespace: stack.temporal.options.namespace,
      taskQueue: { name: `agent.${agentId}` },
      taskQueueType: 2 /* TASK_QUEUE_TYPE_ACTIVITY */,
    });
    return d.pollers ?? [];
  };

  it('an admin creates a token (shown once, stored hashed, single-use for an hour by default), lists and revokes it', async () => {
    const created = await stack.http('POST', '/v1/enrolment-tokens', { body: { note: 'rack 4' } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const { enrolmentToken: t, token } = created.body;
    assert.match(token, /^pne_[A-Za-z0-9_-]{43}$/);
    assert.match(t.id, /^enr-[0-9a-z]{26}$/);
    assert.deepEqual(
      { note: t.note, maxUses: t.maxUses, uses: t.uses, preAccepted: t.preAccepted, createdBy: t.createdBy },
      { note: 'rack 4', maxUses: 1, uses: 0, preAccepted: false, createdBy: 'alice' },
    );
    const lifetime = Date.parse(t.expiresAt) - Date.parse(t.createdAt);
    assert.ok(Math.abs(lifetime - 3600_000) < 5_000, `expires in an hour, not ${lifetime} ms`);
    const row = await stack.database.db('enrolment_tokens').where({ id: t.id }).first();
    assert.equal(row.token_hash, createHash('sha256').update(token).digest('hex'));
    assert.ok(!JSON.stringify(row).includes(token), 'the token itself is not stored');

    const listed = await stack.http('GET', '/v1/enrolment-tokens');
    const mine = listed.body.enrolmentTokens.find((x: any) => x.id === t.id);
    assert.deepEqual(mine, t);
    assert.ok(!JSON.stringify(listed.body).includes(token), 'no list gives the token back');

    const revoked = await stack.http('DELETE', `/v1/enrolment-tokens/${t.id}`);
    assert.equal(revoked.status, 200);
    assert.ok(revoked.body.enrolmentToken.revokedAt);
    const again = await stack.http('DELETE', `/v1/enrolment-tokens/${t.id}`);
    assert.equal(again.body.enrolmentToken.revokedAt, revoked.body.enrolmentToken.revokedAt, 'revoked once');
    const unknown = await stack.http('DELETE', '/v1/enrolment-tokens/enr-00000000000000000000000000');
    assert.equal(unknown.status, 404);
  });

  it('refuses bad token requests with 400 naming the field, and non-admins with 403', async () => {
    for (const [body, field] of [
      [{ expiresInSeconds: 30 * 86400 + 1 }, 'expiresInSeconds'],
      [{ expiresInSeconds: 0 }, 'expiresInSeconds'],
      [{ maxUses: 0 }, 'maxUses'],
      [{ preAccepted: 'yes' }, 'preAccepted'],
      [{ note: 'a\u0000b' }, 'note'],
      [{ uses: 5 }, ''],
    ] as const) {
      const r = await stack.http('POST', '/v1/enrolment-tokens', { body });
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.body.error.code, 'validation_failed');
      if (field) assert.equal(r.body.error.field, field);
    }
    const agent = await register(stack.enrolToken, 'token-reader');
    for (const token of [stack.enrolToken, agent.body.token]) {
      for (const [method, url] of [
        ['GET', '/v1/enrolment-tokens'],
        ['POST', '/v1/enrolment-tokens'],
        ['POST', `/v1/agents/${agent.body.agent.id}/accept`],
        ['DELETE', `/v1/agents/${agent.body.agent.id}`],
      ]) {
        const r = await stack.http(method, url, { token, body: method === 'POST' ? {} : undefined });
        assert.equal(r.status, 403, `${method} ${url}`);
      }
    }
  });

  it('an expired token is refused with 401 saying it expired, and registers nothing', async () => {
    const token = await stack.createEnrolToken({ expiresInSeconds: 1 });
    await new Promise((r) => setTimeout(r, 1500));
    const r = await register(token, 'too-late');
    assert.equal(r.status, 401);
    assert.equal(r.body.error.code, 'unauthorized');
    assert.match(r.body.error.message, /enrolment token enr-\S+ has expired/);
    assert.equal(await stack.database.db('agents').where({ hostname: 'too-late' }).first(), undefined);
  });

  it('a single-use token registers one agent; the second use is 401 saying it is used up', async () => {
    const token = await stack.createEnrolToken({ maxUses: 1, preAccepted: true });
    const first = await register(token, 'once-01');
    assert.equal(first.status, 201, JSON.stringify(first.body));
    const second = await register(token, 'once-02');
    assert.equal(second.status, 401);
    assert.match(second.body.error.message, /enrolment token enr-\S+ is used up/);
    assert.equal(await stack.database.db('agents').where({ hostname: 'once-02' }).first(), undefined);
  });

  it('a token limited to N registrations makes exactly N agents when many hosts register at once', async () => {
    for (const maxUses of [1, 3]) {
      const token = await stack.createEnrolToken({ maxUses });
      const hosts = Array.from({ length: 12 }, (_, i) => `race-${maxUses}-${i}`);
      const results = await Promise.all(hosts.map((h) => register(token, h)));
      const statuses = results.map((r) => r.status).sort();
      assert.deepEqual(statuses, [...Array(maxUses).fill(201), ...Array(12 - maxUses).fill(401)]);
      for (const r of results.filter((x) => x.status === 401)) assert.match(r.body.error.message, /used up/);
      const made = await stack.database.db('agents').whereIn('hostname', hosts).select('id');
      assert.equal(made.length, maxUses, 'one agent per use, however many raced');
      const row = await stack.database
        .db('enrolment_tokens')
        .where({ token_hash: sha(token) })
        .first();
      assert.equal(row.uses, maxUses);
    }
  });

  it('a revoked token is 401 saying so; agents it registered keep working', async () => {
    const created = await stack.http('POST', '/v1/enrolment-tokens', { body: { maxUses: null, preAccepted: true } });
    const { token } = created.body;
    const { id } = created.body.enrolmentToken;
    const before = await register(token, 'before-revoke');
    assert.equal(before.status, 201);
    assert.equal((await stack.http('DELETE', `/v1/enrolment-tokens/${id}`)).status, 200);
    const after = await register(token, 'after-revoke');
    assert.equal(after.status, 401);
    assert.match(after.body.error.message, /enrolment token enr-\S+ was revoked/);
    const self = await stack.http('GET', `/v1/agents/${before.body.agent.id}`, { token: before.body.token });
    assert.equal(self.status, 200);
    const row = await stack.database.db('agents').where({ id: before.body.agent.id }).first();
    assert.equal(row.enrolment_token_id, id, 'the agent records which token enrolled it');
  });

  it('a pending agent can only read itself, runs on it are 409, and its process waits without polling until accepted', async () => {
    const token = await stack.createEnrolToken({ maxUses: 1 });
    const agent = await stack.startAgent('pending-01', PLAN, undefined, {
      PATCHNANNY_ENROL_TOKEN: token,
      PATCHNANNY_AGENT_ACCEPT_POLL_MS: '200',
    });
    assert.match(
      renderLog(agent.output()),
      new RegExp(
        `\\[agent\\] agent ${agent.id} is pending: waiting for an admin to accept it \\(POST /v1/agents/${agent.id}/accept\\)`,
      ),
    );
    const self = await stack.http('GET', `/v1/agents/${agent.id}`, { token: agent.token });
    assert.equal(self.status, 200);
    assert.deepEqual(
      [self.body.agent.status, self.body.agent.flag, self.body.agent.acceptedAt],
      ['pending', null, null],
    );
    const scripts = await stack.http('GET', '/v1/scripts/apt-update.sh', { token: agent.token });
    assert.equal(scripts.status, 403);
    assert.match(scripts.body.error.message, /pending acceptance/);

    const run = await stack.http('POST', '/v1/runs', { body: { agentId: agent.id, mode: 'dry-run' } });
    assert.equal(run.status, 409);
    assert.equal(run.body.error.code, 'agent_not_accepted');
    assert.match(run.body.error.message, /pending acceptance/);
    assert.equal(await stack.database.db('patch_runs').where({ agent_id: agent.id }).first(), undefined);

    // A window may name it (it is set up before its hosts are accepted); its firings skip it, saying why.
    const w = await stack.createWindow({ ...TRIGGER_ONLY_WINDOW, targets: { agentIds: [agent.id] } });
    assert.equal((await stack.http('POST', `/v1/windows/${w.id}/trigger`)).status, 202);
    const firing = await stack.waitFor('the window firing', async () => {
      const got = await stack.http('GET', `/v1/windows/${w.id}`);
      return got.body.window.schedule.recentFirings[0]?.workflowId as string | undefined;
    });
    const report = await stack.temporal.workflow.getHandle(firing).result();
    assert.deepEqual(report.runs, []);
    assert.deepEqual(report.skippedTargets, [{ agentId: agent.id, reason: 'agent is pending acceptance' }]);

    // Still waiting: the agent never polled its queue, so nothing could reach it.
    await new Promise((r) => setTimeout(r, 1000));
    assert.deepEqual(await pollers(agent.id), []);
    assert.doesNotMatch(agent.output(), /polling/);

    const accepted = await stack.http('POST', `/v1/agents/${agent.id}/accept`);
    assert.equal(accepted.status, 200);
    assert.equal(accepted.body.agent.status, 'accepted');
    await until('the agent to notice its acceptance and poll', () => /polling agent\./.test(agent.output()));
    const id = await startRun(agent.id);
    const done = await stack.waitForOutcome(id, 60_000);
    assert.equal(done.outcome, 'completed', done.failureReason);
    assert.deepEqual(fixture(agent).calls(), ['dry-run']);
    const row = await stack.database.db('agents').where({ id: agent.id }).first();
    assert.equal(row.accepted_by, 'alice');
    // Accepting again changes nothing.
    const again = await stack.http('POST', `/v1/agents/${agent.id}/accept`);
    assert.equal(again.status, 200);
    assert.equal(again.body.agent.acceptedAt, accepted.body.agent.acceptedAt);
    assert.equal((await stack.http('POST', '/v1/agents/nobody-here/accept')).status, 404);
  });

  it('a pending agent stops at once on SIGTERM, and comes back as the same pending agent', async () => {
    const token = await stack.createEnrolToken({ maxUses: 1 });
    // The default poll interval (10 s): the stop must not wait for the next poll.
    const agent = await stack.startAgent('pending-stop', PLAN, undefined, { PATCHNANNY_ENROL_TOKEN: token });
    const exited = new Promise<number | null>((resolve) => agent.process.once('exit', (code) => resolve(code)));
    const t0 = Date.now();
    agent.process.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.ok(Date.now() - t0 < 5_000, `stopped in ${Date.now() - t0} ms`);
    // Its identity is kept: a restart waits as the same agent (the single-use token is spent anyway).
    const again = await stack.restartAgent(agent, 'pending-stop');
    assert.equal(again.id, agent.id);
    assert.equal((again.output().match(/is pending: waiting/g) ?? []).length, 1);
    const rows = await stack.database.db('agents').where({ hostname: 'pending-stop' }).select('status');
    assert.deepEqual(rows, [{ status: 'pending' }]);
  });

  it('a second registration of an accepted host name is pending and flagged, even with a pre-accepted token', async () => {
    const first = await register(stack.enrolToken, 'web-07.example.org');
    assert.equal(first.body.agent.status, 'accepted');
    assert.equal(first.body.agent.flag, null);
    // Host names compare case-insensitively: WEB-07 is the same host.
    const second = await register(stack.enrolToken, 'WEB-07.example.org');
    assert.equal(second.status, 201);
    assert.notEqual(second.body.agent.id, first.body.agent.id, 'never takes over the first identity');
    assert.deepEqual([second.body.agent.status, second.body.agent.flag], ['pending', 'duplicate-hostname']);
    const listed = (await stack.http('GET', '/v1/agents')).body.agents.find((a: any) => a.id === second.body.agent.id);
    assert.equal(listed.flag, 'duplicate-hostname', 'the admin sees why it waits');
    const run = await stack.http('POST', '/v1/runs', { body: { agentId: second.body.agent.id, mode: 'dry-run' } });
    assert.equal(run.status, 409);

    // Once the first is revoked, a new registration of the name is accepted as the token says.
    assert.equal((await stack.http('DELETE', `/v1/agents/${first.body.agent.id}`)).status, 200);
    const replaced = await register(stack.enrolToken, 'web-07.example.org');
    assert.deepEqual([replaced.body.agent.status, replaced.body.agent.flag], ['accepted', null]);
  });

  it('revoking an agent mid-dry-run ends its run agent-revoked at once and its token is refused', async () => {
    // It reads its own record every 300 ms (PATCHNANNY_AGENT_CHECK_MS): how a running agent learns it was revoked.
    const agent = await stack.startAgent('revoke-dry', PLAN, undefined, { PATCHNANNY_AGENT_CHECK_MS: '300' });
    fixture(agent).set('delay-dry-run', FOREVER);
    const id = await startRun(agent.id);
    await fixture(agent).started('dry-run', 1);
    const revoked = await stack.http('DELETE', `/v1/agents/${agent.id}`);
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    assert.equal(revoked.body.agent.status, 'revoked');
    assert.ok(revoked.body.agent.revokedAt);
    assert.deepEqual(revoked.body.runsEnded, [id]);
    const run = await stack.waitForOutcome(id, 30_000);
    assert.equal(run.outcome, 'agent-revoked');
    assert.equal(run.failureReason, `agent ${agent.id} revoked by alice`);

    for (const url of [`/v1/agents/${agent.id}`, '/v1/scripts/apt-update.sh']) {
      const r = await stack.http('GET', url, { token: agent.token });
      assert.equal(r.status, 401, url);
      assert.equal(r.body.error.code, 'agent_revoked');
      assert.match(r.body.error.message, new RegExp(`agent ${agent.id} was revoked`));
    }
    const runAgain = await stack.http('POST', '/v1/runs', { body: { agentId: agent.id, mode: 'dry-run' } });
    assert.equal(runAgain.status, 409);
    assert.match(runAgain.body.error.message, /revoked/);
    const window = await stack.http('POST', '/v1/windows', {
      body: {
        ...TRIGGER_ONLY_WINDOW,
        name: 'w',
        timezone: 'UTC',
        approval: 'auto',
        targets: { agentIds: [agent.id] },
      },
    });
    assert.equal(window.status, 400);
    assert.match(window.body.error.message, /was revoked/);
    assert.equal((await stack.http('POST', `/v1/agents/${agent.id}/accept`)).status, 409);
    // Revoking again is harmless (and tells any run still open again); the row stays for history.
    const again = await stack.http('DELETE', `/v1/agents/${agent.id}`);
    assert.equal(again.status, 200);
    assert.equal(again.body.agent.revokedAt, revoked.body.agent.revokedAt);
    assert.deepEqual(again.body.runsEnded, []);
    assert.equal((await stack.http('DELETE', '/v1/agents/nobody-here')).status, 404);
    await replayHistory(stack.temporal, id);

    // The running agent stops by itself, with its own exit code (npm start does not restart it) ...
    const code = await new Promise<number | null>((resolve) =>
      agent.process.exitCode !== null ? resolve(agent.process.exitCode) : agent.process.once('exit', resolve),
    );
    assert.equal(code, EXIT_REVOKED, agent.output());
    assert.match(agent.output(), new RegExp(`agent ${agent.id} was revoked .*; stopping`));
    // ... and, restarted with its revoked identity, stops again instead of registering itself again.
    await assert.rejects(stack.restartAgent(agent, 'revoke-dry'), (err: Error) => {
      assert.match(err.message, new RegExp(`exited ${EXIT_REVOKED}`));
      assert.match(err.message, new RegExp(`agent ${agent.id} was revoked`));
      return true;
    });
    const rows = await stack.database.db('agents').where({ hostname: 'revoke-dry' }).select('status');
    assert.deepEqual(rows, [{ status: 'revoked' }], 'no second identity was made');
  });

  it('revoking while a run awaits approval ends it agent-revoked; during an apply, the result is called unknown', async () => {
    const waiting = await stack.startAgent('revoke-review', PLAN);
    const reviewId = await startRun(waiting.id, { mode: 'apply', approval: 'required' });
    await stack.waitForRun(reviewId, (r) => r.phase === 'awaiting-approval', 60_000);

    const applying = await stack.startAgent('revoke-apply', PLAN);
    fixture(applying).set('delay-apply', FOREVER);
    const applyId = await startRun(applying.id, { mode: 'apply', approval: 'auto' });
    await fixture(applying).started('apply', 2);

    for (const a of [waiting, applying]) assert.equal((await stack.http('DELETE', `/v1/agents/${a.id}`)).status, 200);
    const reviewed = await stack.waitForOutcome(reviewId, 30_000);
    assert.equal(reviewed.outcome, 'agent-revoked');
    assert.equal(reviewed.failureReason, `agent ${waiting.id} revoked by alice`);
    const applied = await stack.waitForOutcome(applyId, 30_000);
    assert.equal(applied.outcome, 'agent-revoked');
    assert.equal(
      applied.failureReason,
      `apply result unknown: agent revoked while applying (agent ${applying.id} revoked by alice)`,
    );
    for (const id of [reviewId, applyId]) await replayHistory(stack.temporal, id);
  });

  it('a run that raced the revocation (row written before it, workflow started after) executes nothing and ends agent-revoked', async () => {
    const agent = await stack.startAgent('raced-revoke', PLAN);
    // What POST /v1/runs does, with the revocation landing between its status check and the start.
    const id = newRunId(agent.id, Date.now(), Math.random);
    const input: PatchRunInput = {
      runId: id,
      agentId: agent.id,
      hostname: 'raced-revoke',
      mode: 'dry-run',
      approval: 'required',
      requestedBy: 'alice',
      timeouts: resolveRunTimeouts(stack.runDefaults),
    };
    await insertRunRows(stack.database.db, [input]);
    const revoked = await stack.http('DELETE', `/v1/agents/${agent.id}`);
    assert.deepEqual(revoked.body.runsEnded, [], 'its workflow did not exist yet to be told');
    await stack.temporal.workflow.start(patchRun, { taskQueue: stack.controlQueue, workflowId: id, args: [input] });
    const run = await stack.waitForOutcome(id, 30_000);
    assert.equal(run.outcome, 'agent-revoked');
    assert.equal(run.failureReason, `agent ${agent.id} was revoked by alice`);
    assert.deepEqual(fixture(agent).calls(), [], 'nothing ran on the host');
  });

  describe('the enrolment token does not outlive registration in the agent', { concurrency: true }, () => {
    /** A script shell that records the environment the patch script gets, then runs it with bash. */
    const envDumpingShell = (agentDir: string) => {
      const shell = path.join(agentDir, 'env-dump-bash.sh');
      writeFileSync(shell, '#!/bin/sh\nenv > "$PN_FIXTURE_DIR/script-env"\nexec /bin/bash "$@"\n');
      chmodSync(shell, 0o755);
      return shell;
    };
    const scriptEnvOf = async (agent: TestAgent) => {
      const id = await startRun(agent.id);
      const run = await stack.waitForOutcome(id, 60_000);
      assert.equal(run.outcome, 'completed', run.failureReason);
      return readFileSync(path.join(agent.fixtureDir, 'script-env'), 'utf8');
    };

    it('given in PATCHNANNY_ENROL_TOKEN, it is gone from the environment patch scripts inherit', async () => {
      const token = await stack.createEnrolToken({ maxUses: 1, preAccepted: true });
      const agent = await stack.startAgent('env-token', PLAN, undefined, {
        PATCHNANNY_ENROL_TOKEN: token,
        PATCHNANNY_SCRIPT_SHELL: envDumpingShell(stack.tmpDir()),
      });
      const env = await scriptEnvOf(agent);
      assert.match(env, /^PN_FIXTURE_DIR=/m, 'the dump is the script environment');
      assert.doesNotMatch(env, /PATCHNANNY_ENROL_TOKEN/);
      assert.ok(!env.includes(token), 'the token is nowhere in the script environment');
      assert.ok(!agent.output().includes(token), 'the agent never logs it');
    });

    it('given in PATCHNANNY_ENROL_TOKEN_FILE (the recommended way), it is read once, the file is removed, and neither it nor the path is kept', async () => {
      const token = await stack.createEnrolToken({ maxUses: 1, preAccepted: true });
      const file = path.join(stack.tmpDir(), 'enrol-token');
      writeFileSync(file, `${token}\n`, { mode: 0o600 });
      const agent = await stack.startAgent('file-token', PLAN, undefined, {
        PATCHNANNY_ENROL_TOKEN: undefined,
        PATCHNANNY_ENROL_TOKEN_FILE: file,
        PATCHNANNY_SCRIPT_SHELL: envDumpingShell(stack.tmpDir()),
      });
      const self = await stack.http('GET', `/v1/agents/${agent.id}`);
      assert.equal(self.body.agent.status, 'accepted', 'registered with the token from the file');
      assert.ok(!existsSync(file), 'the enrolment token file is gone once the agent has its own identity');
      assert.match(agent.output(), /removed the enrolment token file/);
      const env = await scriptEnvOf(agent);
      assert.doesNotMatch(env, /PATCHNANNY_ENROL_TOKEN/);
      assert.ok(!env.includes(token));
      assert.ok(!agent.output().includes(token));
    });
  });
});

const sha = (s: string) => createHash('sha256').update(s).digest('hex');
