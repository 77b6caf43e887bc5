/**
 * The review page (issue 17) in a real headless Chromium (Debian's `chromium`, driven by
 * playwright-core) against a real stack with real agents: sign in, the fleet summary, a group of
 * three hosts approved at once and applied, a page drawn before the plan changed refused, a
 * rejection that needs a reason, a host's run history with a filter, a run's live output while it
 * applies. Screenshots of each step go
 * to artifacts/desk/ (git-ignored).
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ed25519 } from '@noble/curves/ed25519.js';
import { chromium, type Browser, type Page } from 'playwright-core';
import { toBase64Url } from '../../contract/approval';
import { ADMIN_TOKEN, DIST, Stack, type TestAgent } from '../support/stack';
import { fixture } from '../support/fixture';

export const CHROMIUM = '/usr/bin/chromium';
export const ARTIFACTS = path.join(DIST, '../artifacts/desk');
const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security', 'curl amd64 7.88.1-10 7.88.1-11 bookworm'];
const LATER = ['openssl amd64 3.0.15-1 3.0.17-1 bookworm-security', 'curl amd64 7.88.1-10 7.88.1-11 bookworm'];

describe('the review page in a real browser', () => {
  const stack = new Stack();
  let browser: Browser;
  let page: Page;
  let web: TestAgent[] = [];
  let lone: TestAgent;
  const runOf = new Map<string, string>();
  let keyFile = '';

  const shot = (name: string) => page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
  const startRun = async (agentId: string) => {
    const r = await stack.http('POST', '/v1/runs', { body: { agentId, mode: 'apply', approval: 'required' } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return r.body.run.id as string;
  };
  const awaiting = (id: string) => stack.waitForRun(id, (r) => r.phase === 'awaiting-approval' || r.outcome !== null);
  const message = () => page.locator('#message');

  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    await stack.start();
    [web, lone] = await Promise.all([
      Promise.all(['web-a', 'web-b', 'web-c'].map((h) => stack.startAgent(h, PLAN))),
      stack.startAgent('lone-1', ['bash amd64 5.2-1 5.2-2 bookworm']),
    ]);
    fixture(web[2]).set('reboot-required', 'libc6 upgraded');
    for (const a of [...web, lone]) runOf.set(a.id, await startRun(a.id));
    await Promise.all([...runOf.values()].map(awaiting));
    // alice's approver key as `patchnanny keygen` writes it.
    const { keyId, secret } = stack.approverKeys.get('alice')!;
    keyFile = path.join(stack.tmpDir(), 'alice.key');
    writeFileSync(
      keyFile,
      JSON.stringify({ keyId, publicKey: toBase64Url(ed25519.getPublicKey(secret)), privateKey: toBase64Url(secret) }),
    );
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(30_000);
  });
  after(async () => {
    await browser?.close();
    await stack.stop();
  });

  it('signs in with an API token kept in session storage (never in the URL) and shows the fleet summary', async () => {
    await page.goto(`${stack.baseUrl}/`);
    await page.fill('#token', 'not-a-token');
    await page.click('#sign-in-form button');
    await page.locator('#sign-in .hint', { hasText: 'sign-in refused: invalid token' }).waitFor();
    await shot('1-sign-in-refused');
    await page.fill('#token', ADMIN_TOKEN);
    await page.click('#sign-in-form button');
    await page.locator('#summary-figures [data-figure="hosts"] dd', { hasText: '4' }).waitFor();
    assert.equal(await page.locator('#summary-figures [data-figure="pending"] dd').textContent(), '4');
    assert.equal(await page.locator('#summary-figures [data-figure="pending reboot"] dd').textContent(), '1');
    assert.equal(await page.evaluate('sessionStorage.getItem("patchnanny.token")'), ADMIN_TOKEN);
    assert.ok(!page.url().includes(ADMIN_TOKEN));
    // Two plans wait: the three web hosts' and lone-1's.
    await page.locator('article.group').nth(1).waitFor();
    assert.equal(await page.locator('article.group').count(), 2);
    const webGroup = page.locator('article.group[data-hosts="3"]');
    assert.match((await webGroup.locator('table.plan').textContent()) ?? '', /openssl.*3\.0\.15-1 → 3\.0\.16-1/);
    assert.equal(await webGroup.locator('.badge.reboot').first().textContent(), '1 reboot required');
    await shot('2-summary-and-groups');
  });

  it('approves the group of three hosts with one click (one signature per run) and all three complete', async () => {
    await page.setInputFiles('#key-file', keyFile);
    await page.locator('#key-state', { hasText: 'Signing as alice' }).waitFor();
    const webGroup = page.locator('article.group[data-hosts="3"]');
    await webGroup.locator('button.approve').click();
    await message().filter({ hasText: 'approved 3 runs' }).waitFor();
    for (const a of web) {
      await page.locator(`#host-table tr[data-agent="${a.id}"] td.last-outcome`, { hasText: 'completed' }).waitFor();
      const run = await stack.waitForOutcome(runOf.get(a.id)!);
      assert.equal(run.outcome, 'completed', run.failureReason);
      assert.equal(run.approvalSignature.runId, run.id, 'each run was approved with its own statement');
      assert.ok(fixture(a).applied());
    }
    await shot('3-group-approved-and-applied');
  });

  it('a page drawn before the plan changed cannot approve the new plan: refused, and the message says why', async () => {
    const oldRun = runOf.get(lone.id)!;
    const drawn = page.locator('article.group[data-hosts="1"]');
    await drawn.waitFor();
    // Meanwhile: the run is cancelled, the mirror moves on, and a new run plans something else.
    await stack.http('POST', `/v1/runs/${oldRun}/cancel`);
    await stack.waitForOutcome(oldRun);
    writeFileSync(path.join(lone.fixtureDir, 'plan.txt'), LATER.join('\n') + '\n');
    const newRun = await startRun(lone.id);
    const waiting = await awaiting(newRun);
    // The page does not redraw the list under the reader; it says the list changed.
    await page.locator('#reviews-changed').waitFor({ state: 'visible' });
    await drawn.locator('button.approve').click();
    await message().filter({ hasText: `refused: no run approved` }).waitFor();
    assert.match((await message().textContent()) ?? '', /already ended: cancelled/);
    assert.equal(await message().getAttribute('class'), 'error');
    const still = await stack.http('GET', `/v1/runs/${newRun}`);
    assert.equal(still.body.run.phase, 'awaiting-approval', 'the new plan was not approved');
    assert.equal(fixture(lone).applied(), false);
    await shot('4-stale-page-refused');
    runOf.set(lone.id, newRun);
    assert.notEqual(waiting.planHash, null);
  });

  it('rejecting needs a reason; with one, the run is rejected and records it', async () => {
    // The action redrew the list: the current plan is shown now.
    const current = page.locator('article.group[data-hosts="1"]');
    await current.locator('table.plan', { hasText: '3.0.17-1' }).waitFor();
    await current.locator('button.reject', { hasText: 'Reject all' }).click();
    await message().filter({ hasText: 'a reason is required to reject' }).waitFor();
    await current.locator('input.reason').fill('openssl 3.0.17 is not in our test lab yet');
    await current.locator('button.reject', { hasText: 'Reject all' }).click();
    await message().filter({ hasText: 'rejected 1 run' }).waitFor();
    const run = await stack.waitForOutcome(runOf.get(lone.id)!);
    assert.equal(run.outcome, 'rejected');
    assert.equal(run.rejectReason, 'openssl 3.0.17 is not in our test lab yet');
    assert.equal(run.rejectedBy, 'alice');
    await page.locator('#groups', { hasText: 'Nothing waits for approval.' }).waitFor();
    await shot('5-rejected-with-reason');
  });

  it("a host's run history filters by outcome and links each run to its workflow in the Temporal UI", async () => {
    await page.click(`#host-table a[data-agent="${lone.id}"]`);
    await page.locator('#history-table tbody tr').nth(1).waitFor();
    assert.equal(await page.locator('#history-table tbody tr').count(), 2);
    await page.selectOption('#filter-outcome', 'rejected');
    await page.locator('#history-table tbody tr').nth(1).waitFor({ state: 'detached' });
    const row = page.locator('#history-table tbody tr');
    assert.equal(await row.count(), 1);
    assert.match((await row.textContent()) ?? '', /rejected.*openssl 3\.0\.17 is not in our test lab yet/);
    const href = await row.locator('a').getAttribute('href');
    assert.equal(href, `http://127.0.0.1:8233/namespaces/default/workflows/${encodeURIComponent(runOf.get(lone.id)!)}`);
    await shot('6-history-filtered');
  });

  it('live output appears while a run is applying: a line the script printed shows before the run completes', async () => {
    const agent = await stack.startAgent('live-1', PLAN);
    // 60 lines a quarter of a second apart: the apply prints for ~15 s.
    writeFileSync(path.join(agent.fixtureDir, 'lines-apply'), '60 20 0.25\n');
    const r = await stack.http('POST', '/v1/runs', { body: { agentId: agent.id, mode: 'apply', approval: 'auto' } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const id: string = r.body.run.id;
    await stack.waitForRun(id, (run) => run.phase === 'applying' || run.outcome !== null, 60_000);
    await page.selectOption('#filter-outcome', '');
    await page.locator(`#host-table a[data-agent="${agent.id}"]`).click();
    await page.locator(`#history-table tr[data-run="${id}"] button.show-output`).click();
    await page.locator('#live-output', { hasText: 'fixture line 000003' }).waitFor();
    const meanwhile = (await stack.http('GET', `/v1/runs/${id}`)).body.run;
    assert.equal(meanwhile.outcome, null, 'the line was shown while the run was still applying');
    assert.equal(meanwhile.phase, 'applying');
    await shot('7-live-output-while-applying');
    const done = await stack.waitForOutcome(id, 90_000);
    assert.equal(done.outcome, 'completed', done.failureReason);
    await page.locator('#live-state', { hasText: 'run ended' }).waitFor();
    const text = (await page.locator('#live-output').textContent()) ?? '';
    assert.equal((text.match(/fixture line 000060/g) ?? []).length, 1, 'the last line, once');
    await shot('8-live-output-ended');
  });
});
