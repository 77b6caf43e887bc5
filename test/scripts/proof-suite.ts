import assert from 'node:assert/strict';
import { after, before, describe, it as test } from 'node:test';
import { scriptNameFor } from '../../contract';
import { recordCell } from '../../scripts/dev/proof-matrix';
import type { Sandbox } from './sandbox';

/**
 * The cases of the smoke proof (`smoke: true`): plan, apply, exclusion, a pre-existing hold and
 * the security classification — what a new manager version most plausibly changes (its plan
 * records, its hold commands, its advisory data). docs/package-managers.md says which
 * generations run only these and why.
 */
const SMOKE_CASES = new Set(['plan', 'apply', 'exclusion', 'hold', 'classification']);

/**
 * The table-driven proof every patch script must pass against its real package manager.
 * Each family's test file calls this with its sandbox; every case gets a fresh system. With
 * `smoke`, only SMOKE_CASES run; every other case is a matrix cell marked "not run (smoke only)",
 * never a test that is skipped or silently missing.
 */
export function proofSuite(makeSandbox: () => Sandbox, opts: { smoke?: boolean } = {}): void {
  const probe = makeSandbox();
  const row = probe.matrixRow ?? probe.family;
  const kind = opts.smoke ? 'smoke proof' : 'proof';
  const title = `${scriptNameFor(probe.family)} ${kind} for ${row} on ${probe.generation} against the real package manager`;
  let version: string | undefined;
  let index = 0;
  /** A case of the proof: a test, and a cell of the proof matrix (scripts/dev/proof-matrix.ts). */
  const it = (name: string, fn: () => Promise<void>, id = name): void => {
    const place = index++;
    if (opts.smoke && !SMOKE_CASES.has(id)) {
      recordCell({
        row,
        generation: probe.generation,
        case: id,
        title: name,
        index: place,
        ok: false,
        notRun: 'smoke only',
      });
      return;
    }
    void test(name, async () => {
      let ok = false;
      try {
        await fn();
        ok = true;
      } finally {
        version ??= await sb.managerVersion?.().catch(() => undefined);
        recordCell({ row, generation: probe.generation, case: id, title: name, index: place, ok, version });
      }
    });
  };
  let sb!: Sandbox;
  describe(title, { concurrency: 1 }, () => {
    /** sb's fingerprint right after create(). */
    let created = '';
    const fresh = async () => {
      if (sb) await sb.dispose();
      sb = makeSandbox();
      await sb.create();
      created = await sb.fingerprint();
    };
    /**
     * A system in exactly the state create() leaves it in: v1 installed, v2 published. The
     * current one when nothing has written to it since (cases that must change nothing share
     * it), else a new one.
     */
    const pristine = async () => {
      if ((await sb.fingerprint()) !== created) await fresh();
    };
    const names = (list: { name: string }[]) => list.map((p) => p.name).sort();
    before(fresh);
    after(async () => sb && sb.dispose());

    it(
      'dry-run lists exactly the upgradable packages with current and candidate versions, changing nothing',
      async () => {
        const r = await sb.run(['--dry-run']);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.json.mode, 'dry-run');
        assert.equal(r.json.error, null);
        const names = r.json.packages.map((p) => p.name).sort();
        assert.deepEqual(names, ['pn-alpha', 'pn-beta', sb.rebootPackage].sort());
        for (const p of r.json.packages) {
          assert.equal(p.current, sb.version(1), `${p.name} current`);
          assert.equal(p.candidate, sb.version(2), `${p.name} candidate`);
          assert.equal(p.action, 'upgrade');
          assert.ok(p.arch.length > 0 && p.repo.length > 0, `${p.name} has arch and repo`);
        }
        assert.deepEqual(r.json.changed, []);
        assert.equal(await sb.installedVersion('pn-alpha'), sb.version(1));
      },
      'plan',
    );

    it(
      'apply changes exactly what the dry-run planned and reports it from the package database',
      async () => {
        await fresh();
        const plan = await sb.run(['--dry-run']);
        const r = await sb.run(['--apply']);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.json.mode, 'apply');
        const changed = r.json.changed.map((c) => c.name).sort();
        assert.deepEqual(changed, plan.json.packages.map((p) => p.name).sort());
        for (const c of r.json.changed) {
          assert.equal(c.from, sb.version(1));
          assert.equal(c.to, sb.version(2));
        }
        for (const name of changed) assert.equal(await sb.installedVersion(name), sb.version(2), name);
        assert.equal(await sb.installedVersion('pn-stable'), sb.version(1));
        const again = await sb.run(['--dry-run']);
        assert.deepEqual(again.json.packages, [], 'nothing left to upgrade after apply');
      },
      'apply',
    );

    it(
      'reports reboot_required after an apply that upgraded the reboot-triggering package',
      async () => {
        await fresh();
        // Only the reboot package changes, so nothing else can be what raised the flag.
        const r = await sb.run(['--apply', '--exclude', 'pn-alpha,pn-beta']);
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(names(r.json.changed), [sb.rebootPackage]);
        assert.equal(await sb.installedVersion(sb.rebootPackage), sb.version(2));
        assert.equal(r.json.reboot_required, true, r.stderr);
        assert.ok(r.json.reboot_reason && r.json.reboot_reason.length > 0);
      },
      'reboot',
    );

    it(
      'an apply that leaves the reboot-triggering package alone does not report reboot_required',
      async () => {
        await fresh();
        const r = await sb.run(['--apply', '--exclude', sb.rebootPackage]);
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(names(r.json.changed), ['pn-alpha', 'pn-beta']);
        assert.deepEqual(names(r.json.held), [sb.rebootPackage]);
        assert.equal(await sb.installedVersion(sb.rebootPackage), sb.version(1));
        assert.equal(r.json.reboot_required, false, r.json.reboot_reason ?? r.stderr);
        assert.equal(r.json.reboot_reason, null);
      },
      'no-reboot',
    );

    it(
      'an excluded package stays at its version and is reported as held, in dry-run and apply',
      async () => {
        await fresh();
        const plan = await sb.run(['--dry-run', '--exclude', 'pn-alpha']);
        assert.equal(plan.code, 0, plan.stderr);
        assert.ok(!plan.json.packages.some((p) => p.name === 'pn-alpha'), 'excluded package not planned');
        assert.deepEqual(
          plan.json.held.map((p) => p.name),
          ['pn-alpha'],
        );
        assert.equal(plan.json.held[0].candidate, sb.version(2));
        const r = await sb.run(['--apply', '--exclude', 'pn-alpha']);
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(
          r.json.held.map((p) => p.name),
          ['pn-alpha'],
        );
        assert.equal(await sb.installedVersion('pn-alpha'), sb.version(1));
        assert.equal(await sb.installedVersion('pn-beta'), sb.version(2));
        assert.equal(r.json.reboot_required, true, 'reboot package was upgraded');
      },
      'exclusion',
    );

    it(
      'a glob exclusion holds every matching package in dry-run and apply, and the rest is upgraded',
      async () => {
        await fresh();
        // One glob for two packages (pn-alpha, pn-beta); the reboot package and pn-stable do not match.
        const plan = await sb.run(['--dry-run', '--exclude', 'pn-*a']);
        assert.equal(plan.code, 0, plan.stderr);
        assert.deepEqual(names(plan.json.packages), [sb.rebootPackage]);
        assert.deepEqual(names(plan.json.held), ['pn-alpha', 'pn-beta']);
        const r = await sb.run(['--apply', '--exclude', 'pn-*a']);
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(names(r.json.held), ['pn-alpha', 'pn-beta']);
        assert.deepEqual(names(r.json.changed), [sb.rebootPackage]);
        assert.equal(await sb.installedVersion('pn-alpha'), sb.version(1));
        assert.equal(await sb.installedVersion('pn-beta'), sb.version(1));
        assert.equal(await sb.installedVersion(sb.rebootPackage), sb.version(2));
      },
      'glob',
    );

    it(
      'a hold that existed before the run survives both a successful and a failed apply',
      async () => {
        await fresh();
        await sb.addHold('pn-beta');
        const r = await sb.run(['--apply', '--exclude', 'pn-beta,pn-alpha']);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(await sb.hasHold('pn-beta'), true, 'pre-existing hold kept after success');
        assert.equal(await sb.hasHold('pn-alpha'), false, 'the hold the script added is removed again');
        assert.equal(await sb.installedVersion('pn-beta'), sb.version(1));
        await sb.publishBroken();
        const failed = await sb.run(['--apply']);
        assert.notEqual(failed.code, 0);
        assert.equal(await sb.hasHold('pn-beta'), true, 'pre-existing hold kept after failure');
      },
      'hold',
    );

    it(
      'a failing transaction returns the manager failure, not success',
      async () => {
        await fresh();
        await sb.publishBroken();
        const r = await sb.run(['--apply']);
        assert.equal(r.code, 6, r.stderr);
        assert.equal(r.json.error?.code, 'transaction');
        assert.ok(r.json.manager_exit_code !== null && r.json.manager_exit_code !== 0);
        assert.equal(await sb.installedVersion('pn-stable'), sb.version(1));
      },
      'failure',
    );

    it(
      'classifies each planned package as a security fix or not, from the manager data only',
      async () => {
        await pristine();
        const r = await sb.run(['--dry-run']);
        assert.equal(r.code, 0, r.stderr);
        const by = new Map(r.json.packages.map((p) => [p.name, p]));
        const alpha = by.get('pn-alpha')!;
        const beta = by.get('pn-beta')!;
        const reboot = by.get(sb.rebootPackage)!;
        if (sb.securityData === 'none') {
          // No advisory data in the manager: null, never a guess.
          for (const p of r.json.packages) assert.deepEqual([p.name, p.security, p.advisories], [p.name, null, []]);
          return;
        }
        assert.equal(alpha.security, true, 'pn-alpha 2 is the security fix');
        assert.equal(beta.security, false, 'pn-beta 2 is a bug fix');
        assert.equal(reboot.security, false, 'the reboot package has no advisory');
        if (sb.securityData === 'advisories') {
          assert.deepEqual(alpha.advisories, [{ id: 'PN-SA-2026:0001', severity: 'Important' }]);
          assert.deepEqual(beta.advisories, [{ id: 'PN-BA-2026:0002', severity: null }]);
          assert.deepEqual(reboot.advisories, []);
        } else {
          for (const p of r.json.packages) assert.deepEqual(p.advisories, [], `${p.name}: the manager names none`);
        }
      },
      'classification',
    );

    it(
      '--security-only plans and applies only the security fixes (or is refused without advisory data)',
      async () => {
        await pristine();
        if (sb.securityData === 'none') {
          const before = await sb.fingerprint();
          const r = await sb.run(['--apply', '--security-only']);
          assert.equal(r.code, 2, r.stderr);
          assert.equal(r.json.error?.code, 'usage');
          assert.equal(await sb.fingerprint(), before, 'nothing touched');
          return;
        }
        const plan = await sb.run(['--dry-run', '--security-only']);
        assert.equal(plan.code, 0, plan.stderr);
        assert.deepEqual(names(plan.json.packages), ['pn-alpha'], 'the plan shows only what it will do');
        assert.equal(plan.json.packages[0].security, true);
        const r = await sb.run(['--apply', '--security-only']);
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(names(r.json.changed), ['pn-alpha']);
        assert.deepEqual(names(r.json.packages), ['pn-alpha']);
        assert.equal(await sb.installedVersion('pn-alpha'), sb.version(2));
        assert.equal(await sb.installedVersion('pn-beta'), sb.version(1));
        assert.equal(await sb.installedVersion(sb.rebootPackage), sb.version(1));
        if (sb.family === 'apt')
          assert.equal(await sb.hasHold('pn-beta'), false, 'the holds the script added are gone');
      },
      'security-only',
    );

    const badArgs: [string, string[]][] = [
      ['a shell metacharacter in an exclusion', ['--dry-run', '--exclude', 'a;rm -rf /']],
      ['an exclusion that looks like a flag', ['--dry-run', '--exclude', '--all']],
      ['no mode', ['--exclude', 'pn-alpha']],
      ['both modes', ['--dry-run', '--apply']],
      ['an unknown flag', ['--dry-run', '--yes-really']],
      ['a missing exclusion value', ['--apply', '--exclude']],
    ];
    for (const [what, args] of badArgs) {
      it(`refuses ${what} with exit 2 and changes nothing`, async () => {
        // Upgradable packages and no refreshed metadata: a run that went ahead would change the tree.
        await pristine();
        const before = await sb.fingerprint();
        const r = await sb.run(args);
        assert.equal(r.code, 2, r.stderr);
        assert.equal(r.json.error?.code, 'usage');
        assert.equal(r.json.manager_exit_code, null, 'the package manager was never invoked');
        assert.deepEqual(r.json.changed, []);
        assert.equal(await sb.fingerprint(), before, 'not one path of the system changed: no refresh, no transaction');
        for (const name of ['pn-alpha', 'pn-beta', sb.rebootPackage])
          assert.equal(await sb.installedVersion(name), sb.version(1), name);
      });
    }
  });
}
