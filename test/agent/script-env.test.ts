import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AgentEnv } from '../../agent-worker/config';
import { Stack } from '../support/stack';

/**
 * A patch script (and every package maintainer script it starts, as root) sees only the
 * environment docs/script-contract.md lists, never the agent's: a real agent process, started
 * with its enrolment token, its Temporal address and junk in its environment, runs a script that
 * dumps what it got.
 */
describe('the environment a patch script receives', () => {
  const scripts = mkdtempSync(path.join(os.tmpdir(), 'pn-env-scripts-'));
  // Speaks just enough of the script contract for a dry-run with nothing to do.
  writeFileSync(
    path.join(scripts, 'apt-update.sh'),
    [
      '#!/usr/bin/env bash',
      'set -euo pipefail',
      'env -0 >"$PN_FIXTURE_DIR/env"',
      `printf '{"contract":1,"manager":"fixture","mode":"dry-run","packages":[],"held":[],"changed":[],"reboot_required":false,"reboot_reason":null,"manager_exit_code":0,"error":null}\\n'`,
      '',
    ].join('\n'),
  );
  const stack = new Stack();
  before(() => stack.start(scripts));
  after(async () => {
    await stack.stop();
    rmSync(scripts, { recursive: true, force: true });
  });

  it('has exactly the documented names plus those PATCHNANNY_SCRIPT_ENV passes on: no token, no TEMPORAL_*, no DATABASE_URL', async () => {
    const agent = await stack.startAgent('env-host', [], undefined, {
      PATCHNANNY_SCRIPT_ENV: 'PN_FIXTURE_DIR, http_proxy,no_proxy,UNSET_ONE',
      http_proxy: 'http://proxy.example.internal:3128',
      no_proxy: 'localhost',
      DATABASE_URL: 'postgres://patchnanny:secret@db/patchnanny',
      AWS_SECRET_ACCESS_KEY: 'aws-secret',
      SOME_JUNK: 'junk',
    });
    const r = await stack.http('POST', '/v1/runs', { body: { agentId: agent.id, mode: 'dry-run' } });
    assert.equal(r.status, 202);
    const run = await stack.waitForOutcome(r.body.run.id, 60_000);
    assert.equal(run.outcome, 'completed', `${run.failureReason}\n${agent.output()}`);

    const raw = readFileSync(path.join(agent.fixtureDir, 'env'), 'utf8');
    const env = new Map(
      raw
        .split('\0')
        .filter(Boolean)
        .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)] as const),
    );
    for (const own of ['PWD', 'SHLVL', '_', 'OLDPWD']) env.delete(own); // bash sets these itself
    const expected = [
      'HOME',
      'LANG',
      'LC_ALL',
      'PATCHNANNY_RUN_ID',
      'PATH',
      'PN_FIXTURE_DIR',
      'http_proxy',
      'no_proxy',
    ];
    if (process.env.TMPDIR) expected.push('TMPDIR');
    assert.deepEqual([...env.keys()].sort(), expected.sort());
    assert.equal(env.get('PATCHNANNY_RUN_ID'), run.id);
    assert.equal(env.get('http_proxy'), 'http://proxy.example.internal:3128');
    // No credential of any kind, under any name.
    for (const secret of [stack.enrolToken, agent.token, stack.temporalEnv.TEMPORAL_ADDRESS, 'aws-secret', 'secret@db'])
      assert.ok(!raw.includes(secret), `the script's environment holds ${secret}`);
    for (const name of env.keys()) assert.doesNotMatch(name, /TOKEN|TEMPORAL|DATABASE|SECRET|KEY/);
  });

  it("PATCHNANNY_SCRIPT_ENV takes variable names only, and never the agent's own configuration", () => {
    const parse = (names: string) =>
      AgentEnv.safeParse({ PATCHNANNY_API_URL: 'http://127.0.0.1:8080', PATCHNANNY_SCRIPT_ENV: names });
    const ok = parse(' http_proxy, https_proxy ,no_proxy,');
    assert.ok(ok.success);
    assert.deepEqual(ok.data.PATCHNANNY_SCRIPT_ENV, ['http_proxy', 'https_proxy', 'no_proxy']);
    for (const bad of ['PATCHNANNY_ENROL_TOKEN', 'TEMPORAL_API_KEY', 'PATH', 'http_proxy=x', 'a b', '1ABC'])
      assert.equal(parse(bad).success, false, `${bad} accepted`);
  });
});
