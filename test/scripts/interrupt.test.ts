import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseRun, treeFingerprint, type ScriptRun } from './sandbox';
import { PacmanSandbox } from './sandboxes/pacman';
import { ZypperSandbox } from './sandboxes/zypper';

/**
 * docs/script-contract.md, "Interruption": SIGTERM to the script's process group (what the agent
 * sends to a cancelled dry-run) must end the script with exit 3, one JSON document whose error is
 * `environment` and names the signal, and nothing the run added left behind. Proven on the shipped
 * scripts against the real zypper and pacman.
 *
 * The manager call is held open without timing: a shim first in PATH stands in for the manager and,
 * for the one call under test only (the plan of a dry-run, the transaction of an apply), writes a
 * marker file and waits; every other call execs the real binary. The test signals the group once
 * the marker exists, so the signal always lands while the script waits on that call.
 */

const MARKER_TIMEOUT_MS = 180_000;
/** After the signal: the EXIT trap runs the manager again (zypper removelock, retried for ~10 s). */
const EXIT_TIMEOUT_MS = 60_000;

type Mode = 'dry-run' | 'apply';

interface Interrupted {
  run: ScriptRun;
  /** The manager call the shim held open when the signal came (its argv, space-joined). */
  blockedCall: string;
  /** TMPDIR of the script run: must be empty again (the run's workdir removed). */
  tmpEntries: string[];
}

/** `ps` lines of the processes of process group `pgid` that are not zombies. */
function liveInGroup(pgid: number): string[] {
  return execFileSync('ps', ['-e', '-o', 'pgid=,stat=,pid=,args='], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter(([group, stat]) => group === String(pgid) && !stat.startsWith('Z'))
    .map((fields) => fields.slice(1).join(' '));
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Run `bash argv…` detached (its own process group, as the agent spawns scripts) with a shim for
 * `manager` first in PATH that blocks the calls matching `blockWhen` (a bash condition on "$*");
 * once the shim blocks, run `whileBlocked`, then SIGTERM the whole group and collect the result.
 */
async function runInterrupted(
  argv: string[],
  manager: string,
  blockWhen: string,
  whileBlocked: () => Promise<void> = () => Promise.resolve(),
): Promise<Interrupted> {
  const real = execFileSync('bash', ['-c', `command -v ${manager}`], { encoding: 'utf8' }).trim();
  assert.ok(real.startsWith('/'), `${manager} found on PATH: ${real}`);
  const dir = await mkdtemp(join(tmpdir(), 'pn-interrupt-'));
  const shimDir = join(dir, 'bin');
  const tmp = join(dir, 'tmp');
  const marker = join(dir, 'blocked');
  await mkdir(shimDir);
  await mkdir(tmp);
  const shim = join(shimDir, manager);
  await writeFile(
    shim,
    [
      '#!/bin/bash',
      `# test shim for ${manager}: hold the call under test open until the process group is signalled`,
      `if ${blockWhen}; then`,
      `  printf '%s\\n' "$*" >${shellQuote(`${marker}.tmp`)}`,
      `  mv ${shellQuote(`${marker}.tmp`)} ${shellQuote(marker)}`,
      '  sleep 300 &',
      '  wait',
      '  exit 99',
      'fi',
      `exec ${shellQuote(real)} "$@"`,
      '',
    ].join('\n'),
  );
  await chmod(shim, 0o755);

  const child = spawn('bash', argv, {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PATH: `${shimDir}:${process.env.PATH ?? ''}`, TMPDIR: tmp },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  let exited = false;
  void closed.then(() => (exited = true)).catch(() => undefined);
  const pid = child.pid!;
  let groupGone = false;
  try {
    const deadline = Date.now() + MARKER_TIMEOUT_MS;
    while (!existsSync(marker)) {
      if (exited) throw new Error(`the script ended before the shim blocked:\n${stderr}\n${stdout}`);
      if (Date.now() > deadline) throw new Error(`the shim did not block within ${MARKER_TIMEOUT_MS} ms:\n${stderr}`);
      await sleep(50);
    }
    await whileBlocked();
    assert.equal(exited, false, 'the script is still waiting on the blocked call');
    process.kill(-pid, 'SIGTERM');
    const end = await Promise.race([closed, sleep(EXIT_TIMEOUT_MS).then(() => null)]);
    if (!end) throw new Error(`the script did not exit within ${EXIT_TIMEOUT_MS} ms of SIGTERM:\n${stderr}`);
    assert.equal(
      end.signal,
      null,
      `the script died of ${end.signal} instead of exiting:\nstdout: ${stdout}\nstderr: ${stderr}`,
    );
    // Nothing of the group outlives the script (the shim and its sleep got the signal too). Only
    // zombies may be left: orphans are reparented to PID 1, which need not reap them promptly.
    assert.deepEqual(liveInGroup(pid), [], 'no process of the group is still running');
    groupGone = true;
    return {
      run: parseRun({ code: end.code ?? -1, stdout, stderr }),
      blockedCall: (await readFile(marker, 'utf8')).trim(),
      tmpEntries: await readdir(tmp),
    };
  } finally {
    // A check above failed while the script (or its shim) may still run: stop what this test started.
    if (!groupGone) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await rm(dir, { recursive: true, force: true });
  }
}

/** What every interrupted run must report, whatever the family and mode. */
function assertInterrupted(r: Interrupted, manager: string, mode: Mode): void {
  const { run } = r;
  assert.equal(run.code, 3, `exit 3 after SIGTERM\n${run.stderr}`);
  assert.equal(run.stdout.trim().split('\n').length, 1, `exactly one JSON document on stdout:\n${run.stdout}`);
  assert.equal(run.json.contract, 1);
  assert.equal(run.json.manager, manager);
  assert.equal(run.json.mode, mode);
  assert.equal(run.json.error?.code, 'environment', JSON.stringify(run.json.error));
  assert.match(run.json.error?.message ?? '', /SIGTERM/, 'the error names the signal');
  assert.deepEqual(run.json.changed, [], 'nothing changed');
  assert.deepEqual(r.tmpEntries, [], 'the run removed its temporary files');
}

describe('zypper-update.sh on SIGTERM to its process group (real zypper)', { concurrency: 1 }, () => {
  let sb: ZypperSandbox;
  const fresh = async () => {
    if (sb) await sb.dispose();
    sb = new ZypperSandbox();
    await sb.create();
  };
  before(fresh);
  after(async () => sb && sb.dispose());

  const cases: { mode: Mode; call: string; blockWhen: string }[] = [
    // The agent's case: a cancelled dry-run, stopped while zypper solves the plan.
    { mode: 'dry-run', call: 'update --dry-run', blockWhen: `[[ " $* " == *" update --dry-run "* ]]` },
    // The transaction itself (the agent never signals an apply, but the script must still clean up).
    {
      mode: 'apply',
      call: 'update --download-in-advance',
      blockWhen: `[[ " $* " == *" update "* && " $* " != *" --dry-run "* ]]`,
    },
  ];
  for (const c of cases) {
    it(`${c.mode}: exit 3 naming SIGTERM while zypper ${c.call} runs; its locks removed, a pre-existing lock kept`, async () => {
      await fresh();
      await sb.addHold('pn-beta'); // the admin's lock: the run must leave it alone
      const r = await runInterrupted(
        sb.scriptArgv([`--${c.mode}`, '--exclude', 'pn-alpha,pn-beta']),
        'zypper',
        c.blockWhen,
        async () => {
          // The run did add its lock, so its absence afterwards is the trap's doing.
          assert.equal(await sb.hasHold('pn-alpha'), true, 'the run locked pn-alpha for --exclude');
        },
      );
      assert.ok(r.blockedCall.includes(c.call), `the shim held "${c.call}": ${r.blockedCall}`);
      assertInterrupted(r, 'zypper', c.mode);
      assert.equal(await sb.hasHold('pn-alpha'), false, 'the lock the run added is removed');
      assert.equal(await sb.hasHold('pn-beta'), true, 'the pre-existing lock is still there');
      for (const name of ['pn-alpha', 'pn-beta', 'pn-stable', sb.rebootPackage])
        assert.equal(await sb.installedVersion(name), sb.version(1), name);
    });
  }
});

describe('pacman-update.sh on SIGTERM to its process group (real pacman)', { concurrency: 1 }, () => {
  let sb: PacmanSandbox;
  const fresh = async () => {
    if (sb) await sb.dispose();
    sb = new PacmanSandbox();
    await sb.create();
  };
  before(fresh);
  after(async () => sb && sb.dispose());

  const cases: { mode: Mode; call: string; blockWhen: string }[] = [
    { mode: 'dry-run', call: '-Sup', blockWhen: `[[ " $* " == *" -Sup "* ]]` },
    { mode: 'apply', call: '-Su', blockWhen: `[[ " $* " == *" -Su "* ]]` },
  ];
  for (const c of cases) {
    it(`${c.mode}: exit 3 naming SIGTERM while pacman ${c.call} runs; nothing persisted`, async () => {
      await fresh();
      await sb.addHold('pn-beta'); // the admin's IgnorePkg: the run must leave pacman.conf alone
      const conf = join(sb.root, 'etc/pacman.conf');
      const confBefore = await readFile(conf, 'utf8');
      const local = join(sb.root, 'var/lib/pacman/local');
      const localBefore = await treeFingerprint(local);
      const r = await runInterrupted(sb.scriptArgv([`--${c.mode}`, '--exclude', 'pn-alpha']), 'pacman', c.blockWhen);
      assert.ok(r.blockedCall.split(' ').includes(c.call), `the shim held pacman ${c.call}: ${r.blockedCall}`);
      assert.ok(r.blockedCall.includes('--ignore pn-alpha'), `the exclusion is passed as --ignore: ${r.blockedCall}`);
      assertInterrupted(r, 'pacman', c.mode);
      assert.equal(await readFile(conf, 'utf8'), confBefore, 'pacman.conf untouched (no IgnorePkg written)');
      assert.equal(await sb.hasHold('pn-alpha'), false, 'no hold on the excluded package persisted');
      assert.equal(await sb.hasHold('pn-beta'), true, 'the pre-existing IgnorePkg is still there');
      assert.equal(await treeFingerprint(local), localBefore, 'the local package database is unchanged');
      assert.equal(existsSync(join(sb.root, 'var/lib/pacman/db.lck')), false, 'no database lock left');
      for (const name of ['pn-alpha', 'pn-beta', 'pn-stable', sb.rebootPackage])
        assert.equal(await sb.installedVersion(name), sb.version(1), name);
    });
  }
});
