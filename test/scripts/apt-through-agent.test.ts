/**
 * The shipped apt-update.sh, unchanged, run the way production runs it: the API starts a run, the
 * patchRun workflow asks a real agent process to hash-verify and execute the script, an admin
 * approves the plan. The agent's script shell is a wrapper (test/fixtures/chroot-bash.sh) that runs
 * the verified file inside the apt proof's debootstrapped chroot, so real apt patches a real system.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DIST, Stack } from '../support/stack';
import { AptSandbox } from './sandboxes/apt';
import type { ScriptPackage } from './sandbox';

const REPO = path.join(DIST, '..');
/** The folder the control plane serves scripts from by default (PATCHNANNY_SCRIPTS_DIR). */
const SHIPPED_SCRIPTS = path.join(REPO, 'scripts/patch');
const CHROOT_BASH = path.join(REPO, 'test/fixtures/chroot-bash.sh');
const RUN_TIMEOUT_MS = 120_000;

const byName = (rows: ScriptPackage[]) => [...rows].sort((a, b) => a.name.localeCompare(b.name));

describe('the shipped apt-update.sh through the API, the workflow and a real agent, inside a Debian chroot', () => {
  const stack = new Stack();
  const sb = new AptSandbox();
  before(async () => {
    await Promise.all([stack.start(SHIPPED_SCRIPTS), sb.create()]);
  });
  after(async () => {
    await stack.stop();
    await sb.dispose();
  });

  it('an approved apply upgrades the chroot as apt planned it and keeps the excepted package at its version', async () => {
    const agent = await stack.startAgent('chroot-host', [], undefined, {
      PATCHNANNY_SCRIPT_SHELL: CHROOT_BASH,
      PN_CHROOT: sb.root,
    });
    const exception = await stack.http('POST', `/v1/agents/${agent.id}/exceptions`, {
      body: { package: 'pn-beta', reason: 'pinned until the vendor fixes it' },
    });
    assert.equal(exception.status, 201, JSON.stringify(exception.body));
    // What apt itself plans for this system with that exclusion (a dry-run changes nothing).
    const apt = await sb.run(['--dry-run', '--exclude', 'pn-beta']);
    assert.equal(apt.code, 0, apt.stderr);

    const started = await stack.http('POST', '/v1/runs', {
      body: { agentId: agent.id, mode: 'apply', approval: 'required' },
    });
    assert.equal(started.status, 202, JSON.stringify(started.body));
    const id = started.body.run.id as string;
    const waiting = await stack.waitForRun(
      id,
      (r) => r.phase === 'awaiting-approval' || r.outcome !== null,
      RUN_TIMEOUT_MS,
    );
    assert.equal(waiting.phase, 'awaiting-approval', `${waiting.failureReason}\n${agent.output()}`);
    const shipped = createHash('sha256')
      .update(readFileSync(path.join(SHIPPED_SCRIPTS, 'apt-update.sh')))
      .digest('hex');
    assert.deepEqual(waiting.script, { name: 'apt-update.sh', sha256: shipped }, 'the shipped script, byte for byte');
    assert.deepEqual(waiting.exclusions, ['pn-beta']);
    assert.deepEqual(waiting.output[0].argv, ['--dry-run', '--exclude', 'pn-beta']);
    assert.deepEqual(byName(waiting.plan), byName(apt.json.packages), 'the plan rows are what apt planned');
    assert.deepEqual(
      waiting.plan.map((p: ScriptPackage) => p.name).sort(),
      ['pn-alpha', sb.rebootPackage],
      'the plan is not empty and leaves out the excepted package',
    );
    assert.deepEqual(byName(waiting.held), byName(apt.json.held));
    assert.equal(await sb.installedVersion('pn-alpha'), sb.version(1), 'nothing applied before approval');

    const approved = await stack.approve(id, waiting.planHash);
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
    const run = await stack.waitForOutcome(id, RUN_TIMEOUT_MS);
    assert.equal(run.outcome, 'completed', `${run.failureReason}\n${agent.output()}`);
    assert.equal(run.exitCode, 0);
    assert.deepEqual(run.output.at(-1).argv, ['--apply', '--exclude', 'pn-beta']);
    assert.deepEqual(
      run.changed.map((c: { name: string; from: string; to: string }) => [c.name, c.from, c.to]).sort(),
      [
        ['pn-alpha', sb.version(1), sb.version(2)],
        [sb.rebootPackage, sb.version(1), sb.version(2)],
      ],
    );
    assert.equal(run.rebootRequired, true, 'the reboot package asked for a reboot inside the chroot');

    // The chroot itself, read with its own dpkg.
    assert.equal(await sb.installedVersion('pn-alpha'), sb.version(2));
    assert.equal(await sb.installedVersion(sb.rebootPackage), sb.version(2));
    assert.equal(await sb.installedVersion('pn-beta'), sb.version(1), 'the excepted package is untouched');
    assert.equal(await sb.hasHold('pn-beta'), false, 'the temporary hold is gone again');
  });
});
