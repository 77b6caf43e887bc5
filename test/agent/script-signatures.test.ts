/**
 * Signed scripts (issue 10, docs/script-signing.md): an agent runs a script only when its bytes
 * match the pinned SHA-256 *and* a key it trusts signed them. First the agent's activities
 * in-process on real files, then the signing command, then real agents behind the real API and
 * workflow, with the database changed under them as an attacker who owns it would.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createAgentActivities, type HashVerifyResult } from '../../activities/agent';
import type { ScriptExecution } from '../../contract';
import { sha256Hex } from '../../contract/plan-hash';
import { scriptsService } from '../../api/scripts/service';
import {
  checkSignatures,
  generateSigningKey,
  parseTrustedKeys,
  SignatureFile,
  signScript,
  type ScriptSignature,
} from '../../runtime/script-signing';
import { DIST, FIXTURE_SCRIPTS, Stack } from '../support/stack';
import { renderLog } from '../../scripts/dev/log-lines';

const FIXTURE = readFileSync(path.join(FIXTURE_SCRIPTS, 'apt-update.sh'), 'utf8');
const TMP = mkdtempSync(path.join(os.tmpdir(), 'pn-sigscripts-'));
after(() => rmSync(TMP, { recursive: true, force: true }));

const keyA = generateSigningKey();
const keyB = generateSigningKey();
const untrusted = generateSigningKey();
const idOf = (k: { publicLine: string }) => k.publicLine.slice(0, 16);

/** A script that would prove it ran: it leaves a marker in the fixture folder before anything else. */
const EVIL = `#!/bin/bash\ntouch "$PN_FIXTURE_DIR/evil-ran"\n${FIXTURE}`;

function setup(served: string, signatures: ScriptSignature[], trusted: string[]) {
  const stateDir = mkdtempSync(path.join(TMP, 'state-'));
  const fixtureDir = mkdtempSync(path.join(TMP, 'fixture-'));
  writeFileSync(path.join(fixtureDir, 'plan.txt'), 'openssl amd64 1 2 main\n');
  const activities = createAgentActivities({
    family: 'apt',
    stateDir,
    fetchScript: () => Promise.resolve({ content: served, sha256: sha256Hex(served), signatures }),
    trustedScriptKeys: parseTrustedKeys(trusted.join(',')),
    scriptEnv: { PN_FIXTURE_DIR: fixtureDir },
    log: () => undefined,
  });
  const env = new MockActivityEnvironment();
  const sha = sha256Hex(served);
  return {
    stateDir,
    fixtureDir,
    sha,
    verify: (): Promise<HashVerifyResult> =>
      env.run(activities.hashVerify, { scriptName: 'apt-update.sh', sha256: sha }),
    execute: (): Promise<ScriptExecution> =>
      env.run(activities.scriptExecute, {
        runId: 'r',
        sha256: sha,
        mode: 'dry-run' as const,
        exclusions: [] as string[],
        heartbeatMs: 200,
      }),
    ran: () => existsSync(path.join(fixtureDir, 'calls.log')) || existsSync(path.join(fixtureDir, 'evil-ran')),
    stored: () => (existsSync(path.join(stateDir, 'scripts')) ? readdirSync(path.join(stateDir, 'scripts')) : []),
  };
}

const refusedForSignature = (pattern: RegExp) => (err: unknown) => {
  assert.ok(err instanceof ApplicationFailure, String(err));
  assert.equal(err.type, 'script-signature-invalid', err.message);
  assert.equal(err.nonRetryable, true);
  assert.match(err.message, pattern);
  return true;
};

const sign = (content: string, key: { privatePem: string }) => signScript(Buffer.from(content), key.privatePem);

describe('agent activities: a script runs only when a trusted key signed its bytes', () => {
  it('a script signed by a trusted key is stored with its signature and runs', async () => {
    const fx = setup(FIXTURE, [sign(FIXTURE, keyA)], [keyA.publicLine]);
    const verified = await fx.verify();
    assert.equal(verified.downloaded, true);
    const sig = SignatureFile.parse(JSON.parse(readFileSync(`${verified.path}.sig`, 'utf8')));
    assert.equal(sig.signatures[0].keyId, idOf(keyA));
    assert.equal(statSync(`${verified.path}.sig`).mode & 0o777, 0o600);
    const run = await fx.execute();
    assert.equal(run.exitCode, 0, run.stderr);
    assert.equal(readFileSync(path.join(fx.fixtureDir, 'calls.log'), 'utf8'), 'dry-run\n');
  });

  it('rotation: with keys A and B trusted, a script signed by B alone is accepted', async () => {
    const fx = setup(FIXTURE, [sign(FIXTURE, keyB)], [keyA.publicLine, keyB.publicLine]);
    await fx.verify();
    assert.equal((await fx.execute()).exitCode, 0);
    assert.ok(fx.ran());
  });

  it('a script signed only by an untrusted key is refused, naming the keys; nothing stored, nothing run', async () => {
    const fx = setup(FIXTURE, [sign(FIXTURE, untrusted)], [keyA.publicLine, keyB.publicLine]);
    await assert.rejects(
      fx.verify(),
      refusedForSignature(
        new RegExp(`signed only by key\\(s\\) ${idOf(untrusted)}.*trusted keys: ${idOf(keyA)}, ${idOf(keyB)}`),
      ),
    );
    assert.deepEqual(fx.stored(), []);
    await assert.rejects(
      fx.execute(),
      (err: unknown) => err instanceof ApplicationFailure && err.type === 'script-missing',
    );
    assert.equal(fx.ran(), false);
  });

  it('a script with no signature is refused', async () => {
    const fx = setup(FIXTURE, [], [keyA.publicLine]);
    await assert.rejects(fx.verify(), refusedForSignature(/has no signature/));
    assert.deepEqual(fx.stored(), []);
    assert.equal(fx.ran(), false);
  });

  it('other bytes under a trusted key id (a replaced script, its hash pinned anew) are refused', async () => {
    // The pinned hash is the evil script's own, so the hash check passes: only the signature stops it.
    const fx = setup(EVIL, [sign(FIXTURE, keyA)], [keyA.publicLine]);
    await assert.rejects(fx.verify(), refusedForSignature(new RegExp(`trusted key ${idOf(keyA)} does not verify`)));
    assert.deepEqual(fx.stored(), []);
    assert.equal(fx.ran(), false);
  });

  it('a stored signature that was removed or swapped is caught by script-execute before anything runs', async () => {
    const fx = setup(FIXTURE, [sign(FIXTURE, keyA)], [keyA.publicLine]);
    const verified = await fx.verify();
    // Someone with write access to the state folder swaps in a signature by a key they hold.
    writeFileSync(`${verified.path}.sig`, JSON.stringify({ signatures: [sign(FIXTURE, untrusted)] }));
    await assert.rejects(fx.execute(), refusedForSignature(/stored script .* signed only by key/));
    rmSync(`${verified.path}.sig`);
    await assert.rejects(fx.execute(), refusedForSignature(/stored script .* has no signature/));
    assert.equal(fx.ran(), false);
    // hash-verify replaces the copy whose signature no longer holds with a fresh, verified download.
    assert.equal((await fx.verify()).downloaded, true);
    assert.equal((await fx.execute()).exitCode, 0);
  });
});

describe('npm run sign:scripts', () => {
  const cli = path.join(DIST, 'scripts/dev/sign-scripts.js');
  const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });

  it('keygen makes a 0600 private key and a public key line; signing writes .sig files that verify, one signature per key', () => {
    const dir = mkdtempSync(path.join(TMP, 'sign-'));
    const keys = [path.join(dir, 'old.key'), path.join(dir, 'new.key')];
    const lines = keys.map((k) => {
      const r = run(['keygen', '--out', k]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(statSync(k).mode & 0o777, 0o600);
      assert.equal(readFileSync(`${k}.pub`, 'utf8').trim(), r.stdout.trim());
      return r.stdout.trim();
    });
    assert.notEqual(run(['keygen', '--out', keys[0]]).status, 0, 'an existing key is never overwritten');

    const out = path.join(dir, 'signed');
    const r = run(['--key', keys[0], '--key', keys[1], '--dir', FIXTURE_SCRIPTS, '--out', out]);
    assert.equal(r.status, 0, r.stderr);
    const content = readFileSync(path.join(out, 'apt-update.sh'));
    assert.equal(content.toString(), FIXTURE, 'the signed copy has the same bytes');
    const sig = SignatureFile.parse(JSON.parse(readFileSync(path.join(out, 'apt-update.sh.sig'), 'utf8')));
    assert.deepEqual(
      sig.signatures.map((s) => s.keyId),
      lines.map((l) => l.slice(0, 16)),
    );
    // Each key alone accepts it (agents on the old key and on the new one); a stranger's does not.
    for (const line of lines) assert.equal(checkSignatures(content, sig.signatures, parseTrustedKeys(line)).ok, true);
    assert.equal(checkSignatures(content, sig.signatures, parseTrustedKeys(untrusted.publicLine)).ok, false);
    assert.equal(checkSignatures(Buffer.from(EVIL), sig.signatures, parseTrustedKeys(lines.join(','))).ok, false);
  });

  it('a key line whose id is not its key is refused', () => {
    const forged = `${idOf(keyA)}:${keyB.publicLine.slice(17)}`;
    assert.throws(() => parseTrustedKeys(forged), /the id does not match the key/);
  });
});

describe('an agent without a trusted script key', () => {
  it('refuses to start, before registering, unless PATCHNANNY_ALLOW_UNSIGNED_SCRIPTS=1', () => {
    const state = mkdtempSync(path.join(TMP, 'nokey-'));
    const r = spawnSync(process.execPath, [path.join(DIST, 'agent-worker/main.js')], {
      env: {
        PATH: process.env.PATH,
        PATCHNANNY_API_URL: 'http://127.0.0.1:9',
        PATCHNANNY_ENROL_TOKEN: 'enrol',
        PATCHNANNY_AGENT_STATE_DIR: path.join(state, 'state'),
        PATCHNANNY_AGENT_FAMILY: 'apt',
      },
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.equal(r.status, 1, r.stdout + r.stderr);
    // said as the agent's last JSON log line, at level fatal
    assert.match(
      renderLog(r.stdout),
      /\[agent\] FATAL no trusted script signing key: set PATCHNANNY_TRUSTED_SCRIPT_KEYS/,
    );
    assert.equal(existsSync(path.join(state, 'state')), false, 'nothing was set up');
  });
});

describe('end to end: real agents, the API and the workflow, the database changed under them', () => {
  const stack = new Stack();
  before(() => stack.start());
  after(() => stack.stop());

  const dryRun = async (agentId: string) => {
    const r = await stack.http('POST', '/v1/runs', { body: { agentId, mode: 'dry-run' } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return stack.waitForOutcome(r.body.run.id as string, 60_000);
  };
  const setScript = (content: string, signatures: ScriptSignature[] | null) =>
    stack.database
      .db('scripts')
      .where({ name: 'apt-update.sh' })
      .update({
        content,
        sha256: sha256Hex(content),
        signatures: signatures === null ? null : JSON.stringify(signatures),
      });
  const ran = (fixtureDir: string) =>
    existsSync(path.join(fixtureDir, 'calls.log')) || existsSync(path.join(fixtureDir, 'evil-ran'));

  it('the API serves each script with the signatures loaded from its .sig', async () => {
    const r = await stack.http('GET', '/v1/scripts/apt-update.sh');
    assert.equal(r.status, 200);
    assert.deepEqual(
      r.body.script.signatures.map((s: ScriptSignature) => s.keyId),
      [idOf(stack.scriptKey)],
    );
    const check = checkSignatures(
      Buffer.from(r.body.script.content),
      r.body.script.signatures,
      parseTrustedKeys(stack.scriptKey.publicLine),
    );
    assert.equal(check.ok, true);
  });

  it('a script whose bytes and pinned hash were both replaced in the database is refused: nothing executed', async () => {
    const agent = await stack.startAgent('replaced-host', ['openssl amd64 1 2 main']);
    // An attacker who owns the database: new bytes, their hash pinned, the old signatures kept.
    const served = await stack.http('GET', '/v1/scripts/apt-update.sh');
    await setScript(EVIL, served.body.script.signatures);
    const run = await dryRun(agent.id);
    assert.equal(run.outcome, 'failed');
    assert.match(
      run.failureReason,
      new RegExp(`^script-signature-invalid: .*trusted key ${idOf(stack.scriptKey)} does not verify`),
      agent.output(),
    );
    assert.equal(ran(agent.fixtureDir), false, 'neither the marker nor calls.log was written');
  });

  it('rotation: a script signed by a second trusted key runs; an agent that trusts only the first refuses it', async () => {
    const both = await stack.startAgent('rotated-host', ['openssl amd64 1 2 main'], undefined, {
      PATCHNANNY_TRUSTED_SCRIPT_KEYS: `${stack.scriptKey.publicLine},${keyB.publicLine}`,
    });
    const oldOnly = await stack.startAgent('old-key-host', ['openssl amd64 1 2 main']);
    await setScript(FIXTURE, [sign(FIXTURE, keyB)]);

    const accepted = await dryRun(both.id);
    assert.equal(accepted.outcome, 'completed', `${accepted.failureReason}\n${both.output()}`);
    assert.equal(readFileSync(path.join(both.fixtureDir, 'calls.log'), 'utf8'), 'dry-run\n');

    const refused = await dryRun(oldOnly.id);
    assert.equal(refused.outcome, 'failed');
    assert.match(
      refused.failureReason,
      new RegExp(`^script-signature-invalid: .*signed only by key\\(s\\) ${idOf(keyB)}`),
    );
    assert.equal(ran(oldOnly.fixtureDir), false);
  });

  it('a script loaded without a .sig is served with no signatures and refused by the agent', async () => {
    // The repository's fixture folder has no .sig files, as the repository's scripts/patch has none.
    const unsigned = mkdtempSync(path.join(TMP, 'unsigned-'));
    mkdirSync(unsigned, { recursive: true });
    writeFileSync(path.join(unsigned, 'apt-update.sh'), FIXTURE);
    await scriptsService({ db: stack.database.db }).load(unsigned);
    const r = await stack.http('GET', '/v1/scripts/apt-update.sh');
    assert.deepEqual(r.body.script.signatures, []);

    const agent = await stack.startAgent('unsigned-host', ['openssl amd64 1 2 main']);
    const run = await dryRun(agent.id);
    assert.equal(run.outcome, 'failed');
    assert.match(run.failureReason, /^script-signature-invalid: .*has no signature/);
    assert.equal(ran(agent.fixtureDir), false);
  });
});
