import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createAgentActivities } from '../../activities/agent';
import { sha256Hex } from '../../contract/plan-hash';
import { liveInGroup, until } from '../support/wait';

const FIXTURE = readFileSync(path.resolve(__dirname, '../../../test/fixtures/scripts/apt-update.sh'), 'utf8');

const TMP = mkdtempSync(path.join(os.tmpdir(), 'pn-agent-unit-'));
after(() => rmSync(TMP, { recursive: true, force: true }));

function setup(served = FIXTURE) {
  const stateDir = mkdtempSync(path.join(TMP, 'state-'));
  const fixtureDir = mkdtempSync(path.join(TMP, 'fixture-'));
  writeFileSync(path.join(fixtureDir, 'plan.txt'), 'openssl amd64 1 2 main\nlinux-image-amd64 amd64 6.1 6.2 main\n');
  const activities = createAgentActivities({
    family: 'apt',
    stateDir,
    fetchScript: () => Promise.resolve({ content: served, sha256: sha256Hex(served) }),
    scriptEnv: { PN_FIXTURE_DIR: fixtureDir },
  });
  return { stateDir, fixtureDir, activities, env: new MockActivityEnvironment() };
}

const sha = sha256Hex(FIXTURE);

/** Run an activity in a mock activity context, keeping its types. */
const act = <I, O>(env: MockActivityEnvironment, fn: (input: I) => Promise<O>, input: I): Promise<O> =>
  env.run(fn, input);

/**
 * The agent's activity functions called in-process, not through a Worker: MockActivityEnvironment
 * stands in for the activity context (heartbeats, cancellation). Each test pins one function's own
 * promise (hash before execute, argv, output trimming, the process-group kill) where a failure
 * points at that function. The same activities run in real agent processes against a real
 * Temporal server in test/runs, where cancellation arrives by heartbeat and retries are Temporal's.
 */
describe('agent activities, called in-process: hash-verify and script-execute', () => {
  it('hash-verify stores the script content-addressed and owner-only after checking its hash', async () => {
    const { activities, env, stateDir } = setup();
    const r = await act(env, activities.hashVerify, { scriptName: 'apt-update.sh', sha256: sha });
    assert.equal(r.path, path.join(stateDir, 'scripts', sha));
    assert.equal(r.downloaded, true);
    assert.equal(statSync(r.path).mode & 0o777, 0o700);
    const again = await act(env, activities.hashVerify, { scriptName: 'apt-update.sh', sha256: sha });
    assert.equal(again.downloaded, false, 'a verified stored copy is re-used');
  });

  it('hash-verify refuses a download that does not match the pinned hash and stores nothing', async () => {
    const { activities, env, stateDir } = setup('#!/bin/bash\necho evil\n');
    await assert.rejects(
      act(env, activities.hashVerify, { scriptName: 'apt-update.sh', sha256: sha }),
      (err: unknown) => {
        assert.ok(err instanceof ApplicationFailure);
        assert.equal(err.type, 'script-hash-mismatch');
        assert.equal(err.nonRetryable, true);
        return true;
      },
    );
    assert.equal(existsSync(path.join(stateDir, 'scripts', sha)), false);
  });

  it('script-execute re-checks the stored file right before running it: a file changed on disk never runs', async () => {
    const { activities, env, stateDir, fixtureDir } = setup();
    await act(env, activities.hashVerify, { scriptName: 'apt-update.sh', sha256: sha });
    const marker = path.join(fixtureDir, 'pwned');
    writeFileSync(path.join(stateDir, 'scripts', sha), `#!/bin/bash\ntouch ${marker}\n`);
    await assert.rejects(
      act(env, activities.scriptExecute, { runId: 'r', sha256: sha, mode: 'apply', exclusions: [], heartbeatMs: 1000 }),
      (err: unknown) => err instanceof ApplicationFailure && err.type === 'script-hash-mismatch',
    );
    assert.equal(existsSync(marker), false);
  });

  it('script-execute passes mode and exclusions as argv and returns the parsed plan with its hash', async () => {
    const { activities, env, fixtureDir } = setup();
    await act(env, activities.hashVerify, { scriptName: 'apt-update.sh', sha256: sha });
    const r = await act(env, activities.scriptExecute, {
      runId: 'r',
      sha256: sha,
      mode: 'dry-run',
      exclusions: ['linux-image-*'],
      heartbeatMs: 1000,
    });
    assert.deepEqual(r.argv, ['--dry-run', '--exclude', 'linux-image-*']);
    assert.equal(r.exitCode, 0);
    assert.deepEqual(
      r.result?.packages.map((p) => p.name),
      ['openssl'],
    );
    assert.deepEqual(
      r.result?.held.map((p) => p.name),
      ['linux-image-amd64'],
    );
    assert.match(r.planHash ?? '', /^[0-9a-f]{64}$/);
    assert.equal(readFileSync(path.join(fixtureDir, 'calls.log'), 'utf8'), 'dry-run --exclude linux-image-*\n');
  });

  it('script-execute refuses an exclusion that is not a legal package name, before running anything', async () => {
    const { activities, env, fixtureDir } = setup();
    await act(env, activities.hashVerify, { scriptName: 'apt-update.sh', sha256: sha });
    for (const bad of ['a;rm -rf /', '--all', '$(reboot)', 'UPPER']) {
      await assert.rejects(
        act(env, activities.scriptExecute, {
          runId: 'r',
          sha256: sha,
          mode: 'apply',
          exclusions: [bad],
          heartbeatMs: 1000,
        }),
        (err: unknown) => err instanceof ApplicationFailure && err.type === 'invalid-exclusion',
        bad,
      );
    }
    assert.equal(existsSync(path.join(fixtureDir, 'calls.log')), false);
  });

  it('a script that logs megabytes keeps the head and tail of its log, not the whole of it', async () => {
    const loud =
      '#!/bin/bash\necho FIRST-LINE >&2\nseq 200000 | sed "s/^/noise line /" >&2\necho LAST-LINE >&2\nexit 3\n';
    const { activities, env } = setup(loud);
    const loudSha = sha256Hex(loud);
    await act(env, activities.hashVerify, { scriptName: 'apt-update.sh', sha256: loudSha });
    const r = await act(env, activities.scriptExecute, {
      runId: 'r',
      sha256: loudSha,
      mode: 'dry-run',
      exclusions: [],
      heartbeatMs: 1000,
    });
    assert.equal(r.exitCode, 3);
    assert.equal(r.result, null, 'no JSON document: the contract was broken, and that is reported');
    assert.ok(r.stderr.length < 200 * 1024, `kept ${r.stderr.length} bytes`);
    assert.match(r.stderr, /^FIRST-LINE/);
    assert.match(r.stderr, /LAST-LINE\n$/);
    assert.match(r.stderr, /bytes cut/);
  });

  it(
    'cancelling script-execute asks the script and everything it started to stop, and ends as cancelled once they are gone',
    { timeout: 60_000 },
    async () => {
      // The script starts a helper with its own stdio (as a package manager starts dpkg), so the
      // activity's pipes closing proves nothing about it. The helper says when it is asked to stop
      // (SIGTERM) and writes the pids once its trap is set: the test waits for that, not a clock.
      const helper =
        'trap "echo SIGTERM > $D/helper-stopped; exit 0" TERM; echo "$PPID $$" > $D/pids.tmp; mv $D/pids.tmp $D/pids; sleep 300 & wait';
      const slow = [
        '#!/bin/bash',
        'export D="$PN_FIXTURE_DIR"',
        `bash -c '${helper}' </dev/null >/dev/null 2>&1 &`,
        'wait',
        'echo done > "$D/finished"',
        '',
      ].join('\n');
      const { activities, env, fixtureDir } = setup(slow);
      const slowSha = sha256Hex(slow);
      await act(env, activities.hashVerify, { scriptName: 'apt-update.sh', sha256: slowSha });
      const running = act(env, activities.scriptExecute, {
        runId: 'r',
        sha256: slowSha,
        mode: 'apply',
        exclusions: [],
        heartbeatMs: 200,
      });
      const pidsFile = path.join(fixtureDir, 'pids');
      await until('the script to start its helper', () => existsSync(pidsFile));
      const [scriptPid, helperPid] = readFileSync(pidsFile, 'utf8').trim().split(' ').map(Number);
      const group = liveInGroup(scriptPid);
      assert.ok(group.includes(scriptPid) && group.includes(helperPid), 'the script leads its own process group');

      env.cancel();
      await assert.rejects(running, (err: unknown) => {
        assert.ok(err instanceof CancelledFailure, `a CancelledFailure, not ${String(err)}`);
        assert.equal(err.message, 'CANCELLED');
        return true;
      });
      await until('the process group to be gone', () => liveInGroup(scriptPid).length === 0);
      const stopped = path.join(fixtureDir, 'helper-stopped');
      assert.ok(existsSync(stopped), 'the helper was sent SIGTERM, not left to the SIGKILL after the grace period');
      assert.equal(readFileSync(stopped, 'utf8'), 'SIGTERM\n');
      assert.equal(existsSync(path.join(fixtureDir, 'finished')), false);
    },
  );
});
