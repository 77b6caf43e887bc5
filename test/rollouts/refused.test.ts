/**
 * A rollout workflow started around the API (docs/rollouts.md): anyone with access to the Temporal
 * namespace can start `rollout` by name, as `temporal workflow start --type rollout` would. Its
 * first activity (control.claimRollout) refuses an execution that is not the rollout's own, so
 * such a start touches no host and leaves the real rollout as it was.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { fixture } from '../support/fixture';
import { Stack, type TestAgent } from '../support/stack';

const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security'];

describe('a rollout workflow started around the API is refused', () => {
  const stack = new Stack({ approvalMs: 60_000, agentPickupMs: 30_000, scriptMs: 60_000 });
  const hosts: TestAgent[] = [];

  before(async () => {
    await stack.start();
    hosts.push(...(await Promise.all(['refuse-01', 'refuse-02'].map((n) => stack.startAgent(n, PLAN)))));
    for (const a of hosts) {
      const r = await stack.http('PUT', `/v1/agents/${a.id}/labels`, { body: { labels: { role: 'web' } } });
      assert.equal(r.status, 200, JSON.stringify(r.body));
    }
  });
  after(() => stack.stop());

  /** What an attacker with namespace access can do: start the workflow type by name, on the control queue. */
  const startAround = (workflowId: string, rolloutId: string) =>
    stack.temporal.workflow.start('rollout', {
      taskQueue: stack.controlQueue,
      workflowId,
      args: [{ rolloutId }],
    });
  const refusedSummary = async (workflowId: string, rolloutId: string) => {
    const summary = await (await startAround(workflowId, rolloutId)).result();
    assert.equal(summary.state, 'aborted', JSON.stringify(summary));
    assert.match(summary.reason, /^refused: /);
    assert.equal(summary.total, 0);
    return summary;
  };
  /** This file's hosts' patch workflows (other test files share the Temporal server). */
  const patchWorkflows = async () => {
    const ours = hosts.map((a) => `patch-run.${a.id}.`);
    const found: string[] = [];
    for await (const w of stack.temporal.workflow.list({ query: `WorkflowType = 'patchRun'` }))
      if (ours.some((p) => w.workflowId.startsWith(p))) found.push(w.workflowId);
    return found.sort();
  };
  const noHostTouched = async () => {
    for (const a of hosts) assert.deepEqual(fixture(a).calls(), [], `${a.id} ran no script`);
    assert.equal((await stack.database.db('patch_runs')).length, 0, 'no run rows');
    assert.deepEqual(await patchWorkflows(), [], 'no patch workflows');
  };
  /** The rollout as the API and the database keep it, for before/after comparisons. */
  const recorded = async (id: string) => ({
    row: await stack.database.db('rollouts').where({ id }).first(),
    targets: await stack.database.db('rollout_targets').where({ rollout_id: id }).orderBy('agent_id'),
    audit: (await stack.database.db('audit_log').where({ subject: id }).orderBy('seq')).map((e: any) => e.kind),
  });

  it('an unknown rollout id ends aborted with a refused: reason; no run, no patch workflow, no script', async () => {
    const id = `rol-${randomBytes(8).toString('hex')}`;
    const summary = await refusedSummary(id, id);
    assert.match(summary.reason, new RegExp(`no rollout ${id}`));
    // Under another workflow id the same input is refused before the database is asked.
    const other = await refusedSummary(`attacker-${randomBytes(4).toString('hex')}`, id);
    assert.match(other.reason, /is not rollout/);
    assert.equal((await stack.database.db('rollouts')).length, 0, 'no rollout row appeared');
    await noHostTouched();
  });

  it("a second execution for the API's rollout is refused and leaves its row, targets and hosts as they were", async () => {
    for (const a of hosts) fixture(a).set('delay-apply', 2);
    const r = await stack.http('POST', '/v1/rollouts', {
      body: { mode: 'apply', approval: 'auto', targets: { selector: 'role=web' }, maxConcurrency: 2 },
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const id = r.body.rollout.id as string;
    // The real rollout's own execution has claimed its row before the attacker starts.
    await stack.waitFor(`rollout ${id} claimed`, async () =>
      Boolean((await stack.database.db('rollouts').where({ id }).first())?.workflow_run_id),
    );
    const owner = (await stack.database.db('rollouts').where({ id }).first()).workflow_run_id;

    // While it runs: the same id is taken, another workflow id is refused by the claim.
    await assert.rejects(startAround(id, id), /already started/i);
    const aside = await refusedSummary(`${id}-again`, id);
    assert.match(aside.reason, /is not rollout/);

    const real = await stack.temporal.workflow.getHandle(id).result();
    assert.equal(real.state, 'completed', JSON.stringify(real));
    const before = await recorded(id);
    assert.equal(before.row.workflow_run_id, owner);
    const calls = hosts.map((a) => fixture(a).calls());
    const realRuns = before.targets.map((t: any) => t.run_id as string).sort();
    await stack.waitFor('the real runs listed', async () => (await patchWorkflows()).length === hosts.length);
    assert.deepEqual(await patchWorkflows(), realRuns);
    assert.ok(
      hosts.every((a) => fixture(a).applied()),
      'the real rollout applied every host',
    );

    // Once it has closed, Temporal lets the same workflow id start again: the claim refuses it.
    const again = await refusedSummary(id, id);
    assert.match(again.reason, /belongs to another execution/);
    assert.deepEqual(await recorded(id), before, 'row, targets and audit unchanged');
    assert.deepEqual(
      hosts.map((a) => fixture(a).calls()),
      calls,
      'no host ran another script',
    );
    assert.equal((await stack.database.db('patch_runs')).length, hosts.length, 'only the real rollout’s runs');
    assert.deepEqual(await patchWorkflows(), realRuns, 'no patch workflow besides the real rollout’s');
    const show = await stack.http('GET', `/v1/rollouts/${id}`);
    assert.equal(show.body.rollout.state, 'completed');
  });
});
