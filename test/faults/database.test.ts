import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { statusQuery } from '../../workflows/messages';
import { PatchOutcome } from '../../workflows/search-attributes';
import { replayHistory, Stack } from '../support/stack';
import { startTcpProxy, type TcpProxy } from '../../scripts/dev/tcp-proxy';

const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security'];
const OUTAGE_MS = 12_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The database goes away while a run records its plan and again while it records its outcome:
 * the control worker reaches PostgreSQL through a proxy the test cuts. Control writes retry
 * without an attempt limit, so the run waits and its row catches up when the database returns.
 */
describe('fault: database unreachable while a run records its plan and its outcome', () => {
  const stack = new Stack();
  let proxy: TcpProxy;
  before(async () => {
    const pg = new URL(process.env.PATCHNANNY_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/postgres');
    proxy = await startTcpProxy({ host: pg.hostname, port: Number(pg.port || 5432) });
    stack.controlDatabaseUrl = (direct) => {
      const url = new URL(direct);
      url.host = `127.0.0.1:${proxy.port}`;
      return url.toString();
    };
    await stack.start();
  });
  after(async () => {
    await stack.stop();
    await proxy.close();
  });

  const row = (id: string) => stack.database.db('patch_runs').where({ id }).first();
  const waitUntil = async (what: string, probe: () => Promise<boolean>, timeoutMs = 90_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!(await probe())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(200);
    }
  };

  it('the run waits out both outages and ends completed, its row in agreement with Temporal', async () => {
    const agent = await stack.startAgent('db-outage', PLAN);
    const calls = () => {
      const f = path.join(agent.fixtureDir, 'calls.log');
      return existsSync(f) ? readFileSync(f, 'utf8').trim().split('\n') : [];
    };
    writeFileSync(path.join(agent.fixtureDir, 'delay-dry-run'), '2');
    writeFileSync(path.join(agent.fixtureDir, 'delay-apply'), '2');
    const r = await stack.http('POST', '/v1/runs', { body: { agentId: agent.id, mode: 'apply', approval: 'auto' } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const id: string = r.body.run.id;
    const handle = stack.temporal.workflow.getHandle(id);

    // 1. Cut the database while the dry-run runs: the plan cannot be recorded.
    await waitUntil('the dry-run to start', () => Promise.resolve(calls().includes('dry-run')));
    proxy.cut();
    await waitUntil(
      'the plan to exist in the workflow',
      async () => (await handle.query(statusQuery)).planHash !== null,
    );
    await sleep(OUTAGE_MS);
    const during = await row(id);
    assert.equal(during.plan_hash, null, 'nothing recorded while the database is away');
    assert.equal(calls().includes('apply'), false, 'the run does not go on without its plan on record');
    assert.equal((await handle.describe()).status.name, 'RUNNING');

    // 2. Restore: the plan is recorded, the run applies; cut again while the apply runs.
    proxy.restore();
    await waitUntil('the apply to start', () => Promise.resolve(calls().includes('apply')));
    assert.match((await row(id)).plan_hash, /^[0-9a-f]{64}$/);
    proxy.cut();
    await waitUntil('the apply to finish', async () => (await handle.query(statusQuery)).phase === 'done');
    await sleep(OUTAGE_MS);
    assert.equal((await row(id)).outcome, null, 'the outcome waits for the database');
    assert.equal((await handle.describe()).status.name, 'RUNNING', 'the workflow waits with it');

    // 3. Restore: the row catches up and agrees with Temporal.
    proxy.restore();
    const done = await stack.waitForOutcome(id, 90_000);
    assert.equal(done.outcome, 'completed', done.failureReason);
    assert.deepEqual(
      done.changed.map((c: any) => c.name),
      ['openssl'],
    );
    await handle.result();
    const desc = await handle.describe();
    assert.equal(desc.status.name, 'COMPLETED');
    assert.equal(desc.typedSearchAttributes.get(PatchOutcome), 'completed');
    await replayHistory(stack.temporal, id);
  });

  it('a cancel while the run cannot yet claim its row (database away) ends it cancelled once the database is back', async () => {
    const agent = await stack.startAgent('db-claim-cancel', PLAN);
    proxy.cut();
    const r = await stack.http('POST', '/v1/runs', { body: { agentId: agent.id, mode: 'apply', approval: 'auto' } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const id: string = r.body.run.id;
    await sleep(3000); // the claim retries against the cut database
    assert.equal((await stack.http('POST', `/v1/runs/${id}/cancel`)).status, 202);
    await sleep(2000);
    assert.equal((await row(id)).outcome, null, 'nothing can be recorded yet');
    proxy.restore();
    const done = await stack.waitForOutcome(id, 90_000);
    assert.equal(done.outcome, 'cancelled', done.failureReason);
    assert.equal(done.phase, 'done');
    const desc = await stack.temporal.workflow.getHandle(id).describe();
    assert.equal(desc.status.name, 'COMPLETED', 'a run never fails as a workflow: it returns its named state');
    assert.equal(desc.typedSearchAttributes.get(PatchOutcome), 'cancelled');
    assert.equal(existsSync(path.join(agent.fixtureDir, 'calls.log')), false, 'no script ran');
  });
});
