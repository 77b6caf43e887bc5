import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createAgentActivities, type AgentActivityConfig } from '../../activities/agent';
import { HeadTail, lastLine } from '../../activities/agent/output';
import { sha256Hex } from '../../contract/plan-hash';
import { until } from '../support/wait';

const FIXTURE = readFileSync(path.resolve(__dirname, '../../../test/fixtures/scripts/apt-update.sh'), 'utf8');

const TMP = mkdtempSync(path.join(os.tmpdir(), 'pn-agent-unit-'));
after(() => rmSync(TMP, { recursive: true, force: true }));

function setup(served = FIXTURE, extra: Partial<AgentActivityConfig> = {}) {
  const stateDir = mkdtempSync(path.join(TMP, 'state-'));
  const fixtureDir = mkdtempSync(path.join(TMP, 'fixture-'));
  writeFileSync(path.join(fixtureDir, 'plan.txt'), 'openssl amd64 1 2 main\nlinux-image-amd64 amd64 6.1 6.2 main\n');
  const activities = createAgentActivities({
    family: 'apt',
    stateDir,
    fetchScript: () => Promise.resolve({ content: served, sha256: sha256Hex(served) }),
    scriptEnv: { PN_FIXTURE_DIR: fixtureDir },
    log: () => undefined,
    // Hash and execution only here; signatures: test/agent/script-signatures.test.ts.
    trustedScriptKeys: [],
    ...extra,
  });
  return { stateDir, fixtureDir, activities, env: new MockActivityEnvironment() };
}

const sha = sha256Hex(FIXTURE);

/** setup(), then hash-verify the served script, as every script-execute needs first. */
async function verified(served = FIXTURE, extra: Partial<AgentActivityConfig> = {}) {
  const fx = setup(served, extra);
  const digest = sha256Hex(served);
  await act(fx.env, fx.activities.hashVerify, { scriptName: 'apt-update.sh', sha256: digest });
  return { ...fx, sha: digest };
}

/** A script-execute input: a dry-run of `sha256` with no exclusions, heartbeats every 200 ms. */
const dryRunOf = (sha256: string) => ({
  runId: 'r',
  sha256,
  mode: 'dry-run' as const,
  exclusions: [] as string[],
  heartbeatMs: 200,
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** A process that still runs (a zombie waiting for init to reap it has stopped running). */
const alive = (pid: number) => {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};
const readFileSafe = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8') : '');

async function waitForFile(file: string): Promise<string> {
  await until(`${file} to be written`, () => readFileSafe(file).endsWith('\n'), 10_000);
  return readFileSafe(file).trim();
}

/** Wall time and peak RSS growth (MB) of an activity, sampled while it runs. */
const report: string[] = [];
after(() => report.forEach((line) => console.log(`# ${line}`)));
async function measured<T>(fn: () => Promise<T>): Promise<{ result: T; ms: number; rssGrowthMb: number }> {
  global.gc?.();
  const before = process.memoryUsage().rss;
  let peak = before;
  const sample = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  const started = Date.now();
  try {
    const result = await fn();
    peak = Math.max(peak, process.memoryUsage().rss);
    return { result, ms: Date.now() - started, rssGrowthMb: (peak - before) / 2 ** 20 };
  } finally {
    clearInterval(sample);
  }
}

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

  it('script-execute runs the bytes it hashed: a stored file changed after the check, before bash reads it, does not run', async () => {
    // The interpreter is a wrapper (as PATCHNANNY_SCRIPT_SHELL can be) that rewrites the canonical
    // stored file after script-execute's hash check and only then starts bash on the path it got.
    const wrapper = path.join(TMP, `late-swap-${Date.now()}.sh`);
    writeFileSync(
      wrapper,
      [
        '#!/bin/bash',
        'printf "%s\\n" "$1" > "$PN_FIXTURE_DIR/wrapper-got"',
        'stored=$(cat "$PN_FIXTURE_DIR/stored-path")',
        'printf "#!/bin/bash\\ntouch \\"\\$PN_FIXTURE_DIR/swapped-ran\\"\\n" > "$stored"',
        'exec /bin/bash "$@"',
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    const fx = await verified(FIXTURE, { shell: wrapper });
    const stored = path.join(fx.stateDir, 'scripts', sha);
    writeFileSync(path.join(fx.fixtureDir, 'stored-path'), stored);
    writeFileSync(path.join(fx.fixtureDir, 'plan.txt'), 'openssl amd64 1 2 main\n');
    const e = await act(fx.env, fx.activities.scriptExecute, dryRunOf(sha));
    assert.equal(e.exitCode, 0, e.stderr);
    assert.deepEqual(
      e.result?.packages.map((p) => p.name),
      ['openssl'],
      'the verified fixture ran',
    );
    assert.equal(readFileSafe(path.join(fx.fixtureDir, 'calls.log')), 'dry-run\n');
    assert.equal(existsSync(path.join(fx.fixtureDir, 'swapped-ran')), false, 'the swapped-in bytes never ran');
    assert.match(readFileSync(stored, 'utf8'), /swapped-ran/, 'the wrapper did change the stored file');
    const got = readFileSafe(path.join(fx.fixtureDir, 'wrapper-got')).trim();
    assert.notEqual(got, stored, 'the shell is handed a sealed copy, not the stored file');
    assert.ok(got.startsWith(path.join(fx.stateDir, 'exec') + path.sep), got);
    assert.equal(existsSync(got), false, 'the sealed copy is removed after the run');
    // And the changed stored file is refused from now on.
    await assert.rejects(
      act(fx.env, fx.activities.scriptExecute, dryRunOf(sha)),
      (err: unknown) => err instanceof ApplicationFailure && err.type === 'script-hash-mismatch',
    );
  });

  for (const mode of ['upgrade', '--apply', 'APPLY', '']) {
    it(`script-execute refuses mode ${JSON.stringify(mode)} (non-retryable) and runs nothing`, async () => {
      const { activities, env, fixtureDir } = await verified();
      await assert.rejects(
        act(env, activities.scriptExecute, { ...dryRunOf(sha), mode: mode as 'apply' }),
        (err: unknown) => {
          assert.ok(err instanceof ApplicationFailure);
          assert.equal(err.type, 'invalid-input');
          assert.equal(err.nonRetryable, true);
          assert.match(err.message, /mode/);
          return true;
        },
      );
      assert.equal(existsSync(path.join(fixtureDir, 'calls.log')), false, 'the script was never called');
    });
  }

  it("a script gets a minimal environment: the agent's own variables (tokens, Temporal, database) are not passed on", async () => {
    const saved = { ...process.env };
    Object.assign(process.env, {
      PATCHNANNY_ENROL_TOKEN: 'enrol-secret',
      TEMPORAL_API_KEY: 'temporal-secret',
      DATABASE_URL: 'postgres://secret@db/x',
      SOME_JUNK: 'junk',
    });
    try {
      const dump = '#!/bin/bash\nenv -0 > "$PN_FIXTURE_DIR/env"\n';
      const { activities, env, fixtureDir } = await verified(dump);
      await act(env, activities.scriptExecute, { ...dryRunOf(sha256Hex(dump)), runId: 'patch-run.a.1' });
      const seen = Object.fromEntries(
        readFileSync(path.join(fixtureDir, 'env'), 'utf8')
          .split('\0')
          .filter(Boolean)
          .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
      );
      for (const own of ['PWD', 'SHLVL', '_', 'OLDPWD']) delete seen[own]; // bash's own
      const expected = ['HOME', 'LANG', 'LC_ALL', 'PATCHNANNY_RUN_ID', 'PATH', 'PN_FIXTURE_DIR'];
      if (process.env.TMPDIR) expected.push('TMPDIR');
      assert.deepEqual(Object.keys(seen).sort(), expected.sort());
      assert.equal(seen.PATCHNANNY_RUN_ID, 'patch-run.a.1');
      assert.equal(seen.PATH, '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
      assert.equal(seen.LC_ALL, 'C.UTF-8');
    } finally {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    }
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
    const { activities, env, sha: loudSha } = await verified(loud);
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
    assert.match(
      r.stderr,
      /LAST-LINE\n\n\[patchnanny-agent\] stdout \(0 bytes\) is not the script contract's one JSON document\n$/,
    );
    assert.match(r.stderr, /bytes cut/);
  });

  it('a script that prints 100 MB completes in linear time and grows the agent by a few MB at most', async () => {
    // 100 MB of log on stderr, then the one JSON document on stdout: the plan still parses.
    const loud = [
      '#!/bin/bash',
      'echo FIRST-LINE >&2',
      "yes 'noise noise noise noise noise noise noise noise noise noise noise noise noise' | head -c 104857600 >&2",
      'echo; echo "LAST-LINE ü" >&2',
      'printf \'{"contract":1,"manager":"fixture","mode":"dry-run","packages":[],"held":[],"changed":[],"reboot_required":false,"reboot_reason":null,"manager_exit_code":0,"error":null}\\n\'',
      '',
    ].join('\n');
    const { activities, env, sha: loudSha } = await verified(loud);
    const { result: r, ms, rssGrowthMb } = await measured(() => act(env, activities.scriptExecute, dryRunOf(loudSha)));
    report.push(`100 MB on stderr: ${ms} ms, RSS growth ${rssGrowthMb.toFixed(1)} MB`);
    assert.equal(r.exitCode, 0);
    assert.deepEqual(r.result?.packages, [], 'the JSON document after 100 MB of log still parses');
    assert.match(r.stderr, /^FIRST-LINE\n/);
    assert.match(r.stderr, /LAST-LINE ü\n$/);
    assert.ok(r.stderr.length < 100 * 1024, `kept ${r.stderr.length} characters`);
    assert.ok(rssGrowthMb < 20, `RSS grew ${rssGrowthMb.toFixed(1)} MB`);
    assert.ok(ms < 60_000, `took ${ms} ms`);
  });

  it('a script that prints 100 MB on stdout gets no result and the record says its JSON document was cut', async () => {
    const loud = '#!/bin/bash\nyes \'{"contract":1,"packages":[]}\' | head -c 104857600\n';
    const { activities, env, sha: loudSha } = await verified(loud);
    const { result: r, ms, rssGrowthMb } = await measured(() => act(env, activities.scriptExecute, dryRunOf(loudSha)));
    report.push(`100 MB on stdout: ${ms} ms, RSS growth ${rssGrowthMb.toFixed(1)} MB`);
    assert.equal(r.result, null);
    assert.match(r.stderr, /stdout was 104857600 bytes, more than the \d+ the agent reads: its JSON document was cut/);
    assert.ok(r.stdout.length < 100 * 1024, `kept ${r.stdout.length} characters`);
    assert.ok(rssGrowthMb < 20, `RSS grew ${rssGrowthMb.toFixed(1)} MB`);
    assert.ok(ms < 60_000, `took ${ms} ms`);
  });

  it('cancelling a dry-run stops its whole process group, the package manager included, and the agent lives on', async () => {
    // The shell starts a child (the package manager's stand-in) and waits for it.
    const slow =
      '#!/bin/bash\nsleep 300 &\necho $! > "$PN_FIXTURE_DIR/manager.pid"\nwait\necho done > "$PN_FIXTURE_DIR/finished"\n';
    const { activities, env, fixtureDir, sha: slowSha } = await verified(slow, { killGraceMs: 300 });
    const running = act(env, activities.scriptExecute, dryRunOf(slowSha));
    const managerPid = Number(await waitForFile(path.join(fixtureDir, 'manager.pid')));
    env.cancel();
    await assert.rejects(running);
    assert.equal(alive(managerPid), false, 'the package manager went with the script');
    assert.equal(existsSync(path.join(fixtureDir, 'finished')), false);
    // The SIGKILL timer fires after the grace period on a group that is already gone: the agent
    // (this process) must not throw from it (it used to: ESRCH from a timer killed the agent).
    await sleep(800);
  });

  it('a cancelled dry-run whose script died on SIGTERM leaves no SIGKILL timer that could crash the agent', async () => {
    // The group is just the shell; once it is gone, killing the group fails with ESRCH.
    const one = '#!/bin/bash\necho ready > "$PN_FIXTURE_DIR/ready"\nexec sleep 300\n';
    const { activities, env, fixtureDir, sha: oneSha } = await verified(one, { killGraceMs: 300 });
    const running = act(env, activities.scriptExecute, dryRunOf(oneSha));
    await waitForFile(path.join(fixtureDir, 'ready'));
    const crashes: unknown[] = [];
    const onCrash = (err: unknown) => crashes.push(err);
    process.prependListener('uncaughtException', onCrash);
    try {
      env.cancel();
      await assert.rejects(running);
      await sleep(1000); // past the grace period
    } finally {
      process.removeListener('uncaughtException', onCrash);
    }
    assert.deepEqual(crashes, [], 'nothing thrown from a timer');
  });

  it('a dry-run that ignores SIGTERM is killed with its group after the grace period', async () => {
    const stubborn = `#!/bin/bash\ntrap '' TERM\nsleep 300 &\necho $! > "$PN_FIXTURE_DIR/manager.pid"\nwhile :; do wait || true; done\n`;
    const { activities, env, fixtureDir, sha: sha2 } = await verified(stubborn, { killGraceMs: 1000 });
    const running = act(env, activities.scriptExecute, dryRunOf(sha2));
    const managerPid = Number(await waitForFile(path.join(fixtureDir, 'manager.pid')));
    const cancelled = Date.now();
    env.cancel();
    await assert.rejects(running);
    const waited = Date.now() - cancelled;
    assert.ok(waited >= 900, `SIGKILL came only after the grace period (${waited} ms)`);
    assert.equal(alive(managerPid), false);
  });

  it("a cancelled dry-run's cleanup trap gets to finish before the activity returns", async () => {
    const tidy = `#!/bin/bash\ntrap 'sleep 1; touch "$PN_FIXTURE_DIR/cleaned"; exit 3' TERM\nsleep 300 &\necho $! > "$PN_FIXTURE_DIR/manager.pid"\nwait\n`;
    const { activities, env, fixtureDir, sha: sha2 } = await verified(tidy, { killGraceMs: 10_000 });
    const running = act(env, activities.scriptExecute, dryRunOf(sha2));
    await waitForFile(path.join(fixtureDir, 'manager.pid'));
    env.cancel();
    await assert.rejects(running);
    assert.equal(existsSync(path.join(fixtureDir, 'cleaned')), true, 'the trap ran to its end');
  });

  it('cancelling an apply never interrupts it: the script finishes and its real result is returned', async () => {
    const { activities, env, fixtureDir } = setup();
    writeFileSync(path.join(fixtureDir, 'delay-apply'), '2');
    await act(env, activities.hashVerify, { scriptName: 'apt-update.sh', sha256: sha });
    const running = act(env, activities.scriptExecute, {
      runId: 'r',
      sha256: sha,
      mode: 'apply',
      exclusions: [],
      heartbeatMs: 200,
    });
    await until('the script to start', () => existsSync(path.join(fixtureDir, 'calls.log')), 10_000);
    env.cancel();
    const r = await running;
    assert.equal(r.exitCode, 0);
    assert.equal(existsSync(path.join(fixtureDir, 'applied')), true);
    assert.deepEqual(r.result?.changed.map((c) => c.name).sort(), ['linux-image-amd64', 'openssl']);
  });

  it('a stopping agent stops its running dry-run (retryable) and lets a running apply finish', async () => {
    const stopping = new AbortController();
    const { activities, env, fixtureDir } = setup(FIXTURE, { stopping: stopping.signal, killGraceMs: 1000 });
    writeFileSync(path.join(fixtureDir, 'delay-apply'), '2');
    writeFileSync(path.join(fixtureDir, 'delay-dry-run'), '300');
    await act(env, activities.hashVerify, { scriptName: 'apt-update.sh', sha256: sha });
    const input = { runId: 'r', sha256: sha, exclusions: [], heartbeatMs: 200 };
    const dryRun = act(env, activities.scriptExecute, { ...input, mode: 'dry-run' });
    const apply = act(env, activities.scriptExecute, { ...input, mode: 'apply' });
    await until(
      'both scripts to start',
      () => readFileSafe(path.join(fixtureDir, 'calls.log')).split('\n').length >= 3,
      10_000,
    );
    stopping.abort();
    await assert.rejects(dryRun, (err: unknown) => {
      assert.ok(err instanceof ApplicationFailure);
      assert.equal(err.type, 'agent-shutting-down');
      assert.equal(err.nonRetryable, false);
      return true;
    });
    const applied = await apply;
    assert.equal(applied.exitCode, 0);
    assert.equal(existsSync(path.join(fixtureDir, 'applied')), true);
  });
});

describe('streamed output is kept as head and tail', () => {
  it('keeps everything when it fits and cuts the middle, never a UTF-8 character, when it does not', () => {
    const small = new HeadTail(8, 8);
    small.push(Buffer.from('abc'));
    small.push(Buffer.from('defghijk'));
    assert.equal(small.whole()?.toString(), 'abcdefghijk');
    assert.equal(small.render(100), 'abcdefghijk');

    const text = 'ü€😀'.repeat(1000); // 2-, 3- and 4-byte characters
    const bytes = Buffer.from(text);
    for (const chunk of [1, 7, 4096]) {
      const kept = new HeadTail(1001, 1001);
      for (let i = 0; i < bytes.length; i += chunk) kept.push(bytes.subarray(i, i + chunk));
      assert.equal(kept.total, bytes.length);
      assert.equal(kept.cut, true);
      assert.equal(kept.whole(), null);
      const shown = kept.render(2002);
      assert.doesNotMatch(shown, /\uFFFD/, `chunks of ${chunk}: no broken character`);
      const [head, tail] = shown.split(/\n…\[\d+ bytes cut\]…\n/);
      assert.ok(text.startsWith(head) && text.endsWith(tail), `chunks of ${chunk}: head and tail are the stream's own`);
      assert.ok(Buffer.byteLength(head) > 990 && Buffer.byteLength(tail) > 990);
    }
  });

  it('finds the last non-blank line for heartbeats from the recent bytes alone', () => {
    const kept = new HeadTail(4, 16);
    kept.push(Buffer.from('first\nsecond line\n\n'));
    assert.equal(lastLine(kept.last(4096)), 'second line');
    kept.push(Buffer.from('x'.repeat(100) + '\nthird'));
    assert.equal(lastLine(kept.last(4096)), 'third');
  });
});
