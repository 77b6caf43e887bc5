import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { proofSuite } from './proof-suite';
import { AptSandbox } from './sandboxes/apt';

proofSuite(() => new AptSandbox());

describe('apt-update.sh --apt-mode against the real apt', () => {
  const sb = new AptSandbox();
  after(() => sb.dispose());

  it('upgrade keeps back an update that needs a new package; the default dist-upgrade installs it', async () => {
    await sb.create();
    await sb.publishUpgradeWithNewDependency();
    const row = (p: { name: string; current: string | null; candidate: string | null; action: string }) =>
      [p.name, p.current, p.candidate, p.action].join(' ');

    const kept = await sb.run(['--dry-run', '--apt-mode', 'upgrade']);
    assert.equal(kept.code, 0, kept.stderr);
    assert.deepEqual(kept.json.packages.map(row), [
      'pn-alpha 1.0-1 2.0-1 upgrade',
      'pn-beta 1.0-1 2.0-1 upgrade',
      'pn-kernel 1.0-1 2.0-1 upgrade',
    ]);
    const applied = await sb.run(['--apply', '--apt-mode', 'upgrade']);
    assert.equal(applied.code, 0, applied.stderr);
    assert.deepEqual(applied.json.changed.map((c) => c.name).sort(), ['pn-alpha', 'pn-beta', 'pn-kernel']);
    assert.equal(await sb.installedVersion('pn-gamma'), '1.0-1', 'kept back');
    assert.equal(await sb.installedVersion('pn-newdep'), null, 'no new package under upgrade');

    const plan = await sb.run(['--dry-run']);
    assert.equal(plan.code, 0, plan.stderr);
    assert.deepEqual(plan.json.packages.map(row), ['pn-gamma 1.0-1 2.0-1 upgrade', 'pn-newdep  1.0-1 install']);
    assert.equal(plan.json.packages[1].current, null);
    const r = await sb.run(['--apply']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      r.json.changed.map((c) => [c.name, c.from, c.to]),
      [
        ['pn-gamma', '1.0-1', '2.0-1'],
        ['pn-newdep', null, '1.0-1'],
      ],
    );
    assert.equal(await sb.installedVersion('pn-gamma'), '2.0-1');
    assert.equal(await sb.installedVersion('pn-newdep'), '1.0-1');
  });
});
