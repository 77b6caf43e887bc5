import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Stack } from '../support/stack';

const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security'];

describe('finding runs: the run list pages, Temporal visibility filters by host and outcome', () => {
  const stack = new Stack();
  const hostname = `listing-${Date.now().toString(36)}`;
  let agentId: string;
  const ids: string[] = [];
  before(async () => {
    await stack.start();
    agentId = (await stack.startAgent(hostname, PLAN)).id;
    for (let i = 0; i < 5; i++) {
      const r = await stack.http('POST', '/v1/runs', { body: { agentId, mode: 'dry-run' } });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      ids.push(r.body.run.id);
    }
    for (const id of ids) assert.equal((await stack.waitForOutcome(id, 60_000)).outcome, 'completed');
  });
  after(() => stack.stop());

  it('GET /v1/runs pages newest first with limit and the before cursor, and ends with next null', async () => {
    const pages: string[][] = [];
    let before: string | null = null;
    do {
      const q: string = `/v1/runs?agentId=${agentId}&limit=2${before ? `&before=${before}` : ''}`;
      const r = await stack.http('GET', q);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      pages.push(r.body.runs.map((x: any) => x.id));
      before = r.body.next;
      if (before) assert.equal(before, pages[pages.length - 1][1], 'next is the last run of the page');
    } while (before && pages.length < 10);
    const newestFirst = [...ids].reverse();
    assert.deepEqual(pages, [newestFirst.slice(0, 2), newestFirst.slice(2, 4), newestFirst.slice(4)]);

    const bad = await stack.http('GET', '/v1/runs?before=patch-run.nobody.01JDQ7ZV8Y3M6W9S0X7K2P4N5R');
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.field, 'before');
    assert.equal((await stack.http('GET', '/v1/runs?limit=0')).body.error.field, 'limit');
  });

  it('Temporal lists the runs by PatchHost and PatchOutcome, as the README tells admins to filter', async () => {
    // Visibility is eventually consistent: poll until every run is listed, bounded.
    const find = async (query: string) => {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const found: string[] = [];
        for await (const wf of stack.temporal.workflow.list({ query })) found.push(wf.workflowId);
        if (found.length >= ids.length || Date.now() > deadline) return found.sort();
        await new Promise((r) => setTimeout(r, 250));
      }
    };
    assert.deepEqual(await find(`PatchHost = "${hostname}" AND PatchOutcome = "completed"`), [...ids].sort());
    assert.deepEqual(await find(`PatchHost = "${hostname}" AND PatchPhase = "done"`), [...ids].sort());
    const none: string[] = [];
    for await (const wf of stack.temporal.workflow.list({
      query: `PatchHost = "${hostname}" AND PatchOutcome = "failed"`,
    }))
      none.push(wf.workflowId);
    assert.deepEqual(none, [], 'a filter on another outcome finds none of them');
  });
});
