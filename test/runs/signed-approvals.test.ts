/**
 * Signed approvals (issue 10), end to end: real Temporal, real agents, real PostgreSQL, the real
 * Temporal CLI and the project's own `patchnanny` CLI. An approval applies only when it is a
 * statement over this run's current plan, signed by its `by` with an approver key that was
 * registered (and not revoked) when the run started; anything else is recorded and ignored.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { ed25519 } from '@noble/curves/ed25519.js';
import { signApproval, toBase64Url, type SignedApproval } from '../../contract/approval';
import { fixture } from '../support/fixture';
import { ADMIN_TOKEN, DIST, replayHistory, Stack, type TestAgent } from '../support/stack';
import { cliSignal } from '../support/temporal-cli';

const execFileAsync = promisify(execFile);
const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security', 'curl amd64 7.88.1-10 7.88.1-11 bookworm'];
const CLI = path.join(DIST, 'cli/patchnanny.js');

/** Run the project's CLI as an approver would; its stdout. */
async function patchnanny(...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync(process.execPath, [CLI, ...args]);
  return stdout;
}

describe('signed approvals', { concurrency: true }, () => {
  const stack = new Stack();
  let cliKeyFile = '';
  let carol: { keyId: string; secret: Uint8Array };
  let vera: { keyId: string; secret: Uint8Array };
  before(async () => {
    await stack.start();
    // Approval keys are held by people who may approve: approver users (or admins).
    for (const name of ['erin', 'carol', 'frank', 'vera'])
      assert.equal((await stack.http('POST', '/v1/users', { body: { name, role: 'approver' } })).status, 201);
    // An approver's key made with the CLI and registered (for "erin") before any run starts.
    cliKeyFile = path.join(stack.tmpDir(), 'erin.key');
    const made = JSON.parse(await patchnanny('keygen', '--out', cliKeyFile));
    const reg = await stack.http('POST', '/v1/keys', { body: { owner: 'erin', publicKey: made.publicKey } });
    assert.equal(reg.status, 201, JSON.stringify(reg.body));
    assert.equal(reg.body.key.id, made.keyId, 'the CLI names the key by the id the API gives it');
    // carol's key is registered, then revoked, before any run starts.
    const secret = ed25519.utils.randomSecretKey();
    const r = await stack.http('POST', '/v1/keys', {
      body: { owner: 'carol', publicKey: toBase64Url(ed25519.getPublicKey(secret)) },
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    carol = { keyId: r.body.key.id, secret };
    const revoked = await stack.http('DELETE', `/v1/keys/${carol.keyId}`);
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    assert.ok(revoked.body.key.revokedAt);
    // vera's key is registered while she is an approver; then she is made a viewer, before any run.
    const veraSecret = ed25519.utils.randomSecretKey();
    const v = await stack.http('POST', '/v1/keys', {
      body: { owner: 'vera', publicKey: toBase64Url(ed25519.getPublicKey(veraSecret)) },
    });
    assert.equal(v.status, 201, JSON.stringify(v.body));
    vera = { keyId: v.body.key.id, secret: veraSecret };
    assert.equal((await stack.http('PATCH', '/v1/users/vera', { body: { role: 'viewer' } })).status, 200);
    // A viewer (now vera) cannot be given a key at all.
    const refusedKey = await stack.http('POST', '/v1/keys', {
      body: { owner: 'vera', publicKey: toBase64Url(ed25519.getPublicKey(ed25519.utils.randomSecretKey())) },
    });
    assert.equal(refusedKey.status, 409, JSON.stringify(refusedKey.body));
    assert.match(refusedKey.body.error.message, /vera is a viewer; only approvers and admins hold approval keys/);
  });
  after(() => stack.stop());

  const startRun = async (agent: TestAgent) => {
    const r = await stack.http('POST', '/v1/runs', {
      body: { agentId: agent.id, mode: 'apply', approval: 'required' },
    });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const id = r.body.run.id as string;
    const waiting = await stack.waitForRun(id, (x) => x.phase === 'awaiting-approval' || x.outcome !== null);
    assert.equal(waiting.phase, 'awaiting-approval', waiting.failureReason);
    return { id, planHash: waiting.planHash as string };
  };

  it('the key file is private (0600) and the key list shows who owns which key and which is revoked', async () => {
    assert.equal(statSync(cliKeyFile).mode & 0o777, 0o600);
    const list = await stack.http('GET', '/v1/keys');
    const active = (owner: string) =>
      list.body.keys.filter((k: any) => k.owner === owner).map((k: any) => k.revokedAt === null);
    assert.deepEqual(active('carol'), [false], "carol's one key is revoked");
    assert.deepEqual(active('erin'), [true]);
    assert.deepEqual(active('bob'), [true]);
    assert.ok(active('alice').includes(true));
  });

  it('a signal applies only with a valid signature: every forged, stale or replayed one is recorded as ignored', async () => {
    const [hostA, hostB] = await Promise.all([stack.startAgent('sig-a', PLAN), stack.startAgent('sig-b', PLAN)]);
    const [run, other] = await Promise.all([startRun(hostA), startRun(hostB)]);

    // The other run is approved with a valid signal: its approval is then replayed against this run.
    const otherApproval = stack.signApproval(other.id, other.planHash, 'alice');
    await cliSignal(other.id, 'approve', otherApproval);
    assert.equal((await stack.waitForOutcome(other.id)).outcome, 'completed');

    // A key registered after the run started is not one the run pinned.
    const late = ed25519.utils.randomSecretKey();
    const lateReg = await stack.http('POST', '/v1/keys', {
      body: { owner: 'frank', publicKey: toBase64Url(ed25519.getPublicKey(late)) },
    });
    assert.equal(lateReg.status, 201);

    const good = stack.signApproval(run.id, run.planHash, 'alice');
    const stranger = ed25519.utils.randomSecretKey();
    const alice = stack.approverKeys.get('alice')!;
    const statement = { runId: run.id, planHash: run.planHash, at: new Date().toISOString() };
    const flipped = (s: SignedApproval) => ({
      ...s,
      signature: (s.signature[0] === 'A' ? 'B' : 'A') + s.signature.slice(1),
    });
    const refused: [string, unknown, RegExp][] = [
      ['unsigned', { runId: run.id, planHash: run.planHash, by: 'alice' }, /malformed: at:/],
      [
        'signed by an unknown key',
        signApproval({ ...statement, by: 'alice' }, 'key_notregistered0000000', stranger),
        /unknown approver key/,
      ],
      [
        'signed by a revoked key',
        signApproval({ ...statement, by: 'carol' }, carol.keyId, carol.secret),
        /unknown approver key/,
      ],
      [
        "signed by a viewer's key (registered while she was an approver)",
        signApproval({ ...statement, by: 'vera' }, vera.keyId, vera.secret),
        /unknown approver key/,
      ],
      [
        'signed by a key registered after the run started',
        signApproval({ ...statement, by: 'frank' }, lateReg.body.key.id, late),
        /unknown approver key/,
      ],
      ['signed for another run', stack.signApproval(other.id, run.planHash, 'alice'), /signed for another run/],
      ['signed for another plan', stack.signApproval(run.id, 'e'.repeat(64), 'alice'), /stale plan hash/],
      [
        'by someone who does not own the key',
        signApproval({ ...statement, by: 'bob' }, alice.keyId, alice.secret),
        /belongs to alice, not bob/,
      ],
      ['a signature that does not verify', flipped(good), /invalid signature/],
      [
        'signed 25 hours ago',
        stack.signApproval(run.id, run.planHash, 'alice', new Date(Date.now() - 25 * 3600_000).toISOString()),
        /stale approval/,
      ],
      ["a replay of another run's valid approval", otherApproval, /signed for another run/],
    ];
    for (const [, payload] of refused) await cliSignal(run.id, 'approve', payload);
    const seen = await stack.waitForRun(
      run.id,
      (r) => r.events.filter((e: any) => e.kind === 'ignored-approve').length === refused.length,
      60_000,
    );
    const reasons = seen.events.filter((e: any) => e.kind === 'ignored-approve').map((e: any) => e.detail.reason);
    refused.forEach(([what, , reason], i) => assert.match(reasons[i], reason, what));
    assert.equal(seen.phase, 'awaiting-approval', 'the run keeps waiting');
    assert.equal(seen.approvedBy, null);
    assert.equal(fixture(hostA).applied(), false, 'nothing was applied');
    assert.deepEqual(fixture(hostA).calls(), ['dry-run']);

    // A reject needs no signature (it can only stop a run); not sent here. The real approval:
    // made with the project's CLI and sent with `temporal workflow signal`.
    const signed = JSON.parse(
      await patchnanny(
        'sign-approval',
        '--key',
        cliKeyFile,
        '--run',
        run.id,
        '--plan-hash',
        run.planHash,
        '--by',
        'erin',
      ),
    );
    await cliSignal(run.id, 'approve', signed);
    const done = await stack.waitForOutcome(run.id);
    assert.equal(done.outcome, 'completed', done.failureReason);
    assert.equal(done.approvedBy, 'erin');
    assert.deepEqual(done.approvalSignature, signed, 'the record carries the signed statement');
    assert.ok(fixture(hostA).applied());
    await replayHistory(stack.temporal, run.id);
    await replayHistory(stack.temporal, other.id);
  });

  it('the API refuses an unsigned or wrongly signed approval and applies a signed one (the CLI approve command)', async () => {
    const host = await stack.startAgent('sig-api', PLAN);
    const run = await startRun(host);

    const unsigned = await stack.http('POST', `/v1/runs/${run.id}/approve`, { body: { planHash: run.planHash } });
    assert.equal(unsigned.status, 400, JSON.stringify(unsigned.body));
    assert.equal(unsigned.body.error.code, 'validation_failed');
    assert.match(unsigned.body.error.message, /at|keyId|signature/);

    // Signed by bob's key but sent by alice (the API signs nothing and sets by = the caller).
    const bobs = stack.signApproval(run.id, run.planHash, 'bob');
    const wrong = await stack.http('POST', `/v1/runs/${run.id}/approve`, {
      body: { planHash: bobs.planHash, at: bobs.at, keyId: bobs.keyId, signature: bobs.signature },
    });
    assert.equal(wrong.status, 403, JSON.stringify(wrong.body));
    assert.equal(wrong.body.error.code, 'forbidden');
    assert.match(wrong.body.error.message, /belongs to bob, not alice/);

    const good = stack.signApproval(run.id, run.planHash, 'alice');
    const forged = await stack.http('POST', `/v1/runs/${run.id}/approve`, {
      body: { planHash: good.planHash, at: good.at, keyId: good.keyId, signature: 'A'.repeat(86) },
    });
    assert.equal(forged.status, 403, JSON.stringify(forged.body));
    assert.match(forged.body.error.message, /invalid signature/);
    const still = await stack.waitForRun(run.id, () => true);
    assert.equal(still.phase, 'awaiting-approval');
    assert.equal(fixture(host).applied(), false);

    // `patchnanny approve` fetches the run, signs its plan locally with a key alice owns, POSTs.
    const aliceKeyFile = path.join(stack.tmpDir(), 'alice.key');
    const made = JSON.parse(await patchnanny('keygen', '--out', aliceKeyFile));
    // Registered now: too late for this run (pinned at its start), so the approval is refused…
    assert.equal((await stack.http('POST', '/v1/keys', { body: { publicKey: made.publicKey } })).status, 201);
    const args = ['approve', run.id, '--key', aliceKeyFile, '--api-url', stack.baseUrl, '--token', ADMIN_TOKEN];
    await assert.rejects(
      patchnanny(...args, '--by', 'alice', '--yes'),
      /403 forbidden: refused approval: unknown approver key/,
    );
    // …and the signature from alice's key registered at stack start approves it through the API.
    const ok = await stack.approve(run.id, run.planHash);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const done = await stack.waitForOutcome(run.id);
    assert.equal(done.outcome, 'completed', done.failureReason);
    assert.equal(done.approvedBy, 'alice');
    assert.equal(done.approvalSignature.keyId, stack.approverKeys.get('alice')!.keyId);
    const approvedEvent = done.events.find((e: any) => e.kind === 'approved');
    assert.equal(approvedEvent.detail.keyId, done.approvalSignature.keyId);
    assert.ok(fixture(host).applied());
    await replayHistory(stack.temporal, run.id);
  });

  it('`patchnanny approve` approves a run with a key registered before it started', async () => {
    const keyFile = path.join(stack.tmpDir(), 'alice2.key');
    const made = JSON.parse(await patchnanny('keygen', '--out', keyFile));
    assert.equal((await stack.http('POST', '/v1/keys', { body: { publicKey: made.publicKey } })).status, 201);
    const host = await stack.startAgent('sig-cli', PLAN);
    const run = await startRun(host);
    const out = await patchnanny(
      'approve',
      run.id,
      '--key',
      keyFile,
      '--api-url',
      stack.baseUrl,
      '--token',
      ADMIN_TOKEN,
      '--by',
      'alice',
      '--yes',
    );
    assert.match(out, /openssl 3\.0\.15-1 -> 3\.0\.16-1/, 'the CLI shows the plan it signs');
    assert.match(out, /approved by alice/);
    const done = await stack.waitForOutcome(run.id);
    assert.equal(done.outcome, 'completed', done.failureReason);
    assert.equal(done.approvalSignature.keyId, made.keyId);
    assert.ok(fixture(host).applied());
  });

  it('a key revoked, or its owner disabled, while a run waits approves nothing there any more', async () => {
    const keys: Record<string, { keyId: string; secret: Uint8Array }> = {};
    for (const name of ['rita', 'dina']) {
      assert.equal((await stack.http('POST', '/v1/users', { body: { name, role: 'approver' } })).status, 201);
      const secret = ed25519.utils.randomSecretKey();
      const r = await stack.http('POST', '/v1/keys', {
        body: { owner: name, publicKey: toBase64Url(ed25519.getPublicKey(secret)) },
      });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      keys[name] = { keyId: r.body.key.id, secret };
    }
    const ritaToken = (await stack.http('POST', '/v1/users/rita/tokens', { body: {} })).body.token;
    // The run starts while both keys count: it pins them.
    const host = await stack.startAgent('sig-withdrawn', PLAN);
    const run = await startRun(host);
    const signedBy = (name: string) =>
      signApproval(
        { runId: run.id, planHash: run.planHash, by: name, at: new Date().toISOString() },
        keys[name].keyId,
        keys[name].secret,
      );

    // rita's key is revoked (a lost laptop): her approval of the waiting run is refused.
    assert.equal((await stack.http('DELETE', `/v1/keys/${keys.rita.keyId}`)).status, 200);
    const { at, keyId, signature } = signedBy('rita');
    const byRita = await stack.http('POST', `/v1/runs/${run.id}/approve`, {
      token: ritaToken,
      body: { planHash: run.planHash, at, keyId, signature },
    });
    assert.equal(byRita.status, 403, JSON.stringify(byRita.body));
    assert.match(byRita.body.error.message, /unknown approver key .* revoked since/);

    // dina is disabled: her statement sent straight to Temporal is recorded and ignored.
    assert.equal((await stack.http('PATCH', '/v1/users/dina', { body: { disabled: true } })).status, 200);
    await cliSignal(run.id, 'approve', signedBy('dina'));
    const seen = await stack.waitForRun(run.id, (r) => r.events.some((e: any) => e.kind === 'ignored-approve'));
    assert.match(seen.events.find((e: any) => e.kind === 'ignored-approve').detail.reason, /unknown approver key/);
    assert.equal(seen.phase, 'awaiting-approval');
    // A key that still counts approves it as before.
    assert.equal((await stack.approve(run.id, run.planHash)).status, 200);
    const done = await stack.waitForOutcome(run.id);
    assert.equal(done.outcome, 'completed', done.failureReason);
    assert.equal(done.approvedBy, 'alice');
    assert.ok(fixture(host).applied());
  });
});
