import { spawn } from 'node:child_process';
import { constants as fsc } from 'node:fs';
import { mkdir, open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { z } from 'zod';

/**
 * The host side of a run's reboot (issue 12, docs/reboot-and-hooks.md). What reboots the host
 * and where its boot id is read are the agent's own configuration (its root-owned environment),
 * never the control plane's: a run can ask for a reboot, not say how.
 */
export interface RebootConfig {
  /** Default /proc/sys/kernel/random/boot_id: a new random id every boot. */
  bootIdFile: string;
  /** Run as `<shutdownBin> -r +1 <message>` (systemd's shutdown schedules it a minute out). */
  shutdownBin: string;
}

export const DEFAULT_REBOOT_CONFIG: RebootConfig = {
  bootIdFile: '/proc/sys/kernel/random/boot_id',
  shutdownBin: '/sbin/shutdown',
};

export const RebootInput = z.strictObject({ runId: z.string().regex(/^[A-Za-z0-9._-]{1,200}$/) });
export type RebootInput = z.infer<typeof RebootInput>;

export interface RebootResult {
  /** The boot id before the reboot: the run waits for a different one. */
  bootId: string;
  /** False when this run had already scheduled its reboot (a repeated call): nothing was done again. */
  scheduled: boolean;
}

/** The reboot is scheduled a minute out so the agent can report it before the host goes down. */
export const SHUTDOWN_ARGS = (runId: string) => ['-r', '+1', `patchnanny run ${runId}: reboot after patching`];

export function createRebootActivities(
  config: RebootConfig,
  stateDir: string,
  /** Resolves once no patch script (or hook) runs on this agent: a package manager is never rebooted under. */
  idle: () => Promise<void>,
  parse: <T>(schema: z.ZodType<T>, raw: unknown, activity: string) => T,
) {
  async function readBootId(): Promise<string> {
    let text: string;
    try {
      text = await readFile(config.bootIdFile, 'utf8');
    } catch (err) {
      throw ApplicationFailure.nonRetryable(
        `cannot read the boot id from ${config.bootIdFile}: ${(err as Error).message}`,
        'boot-id-unreadable',
      );
    }
    const id = text.trim();
    if (!/^[A-Za-z0-9-]{1,100}$/.test(id))
      throw ApplicationFailure.nonRetryable(`${config.bootIdFile} holds no boot id`, 'boot-id-unreadable');
    return id;
  }

  /** bootId: the host's current boot id (polled by the run after a reboot; retried while the agent is down). */
  async function bootId(): Promise<{ bootId: string }> {
    return { bootId: await readBootId() };
  }

  /**
   * reboot: read the boot id, then schedule the reboot — once per run. A marker file
   * `<stateDir>/reboots/<runId>` is created exclusively before shutdown is called, so a second call
   * for the same run (a retry, a duplicate task, an agent restarted in between) finds it and
   * returns the boot id recorded then, without rebooting again.
   */
  async function reboot(raw: RebootInput): Promise<RebootResult> {
    const { runId } = parse(RebootInput, raw, 'reboot');
    const dir = path.join(stateDir, 'reboots');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const marker = path.join(dir, runId);
    const ctx = Context.current();
    const beat = setInterval(() => ctx.heartbeat({ step: 'waiting for scripts to finish' }), 1000);
    try {
      await idle();
    } finally {
      clearInterval(beat);
    }
    const before = await readBootId();
    let handle;
    try {
      handle = await open(marker, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const recorded = JSON.parse(await readFile(marker, 'utf8')) as { bootId: string };
      return { bootId: recorded.bootId, scheduled: false };
    }
    try {
      await handle.writeFile(JSON.stringify({ bootId: before, at: new Date().toISOString() }));
      await handle.sync();
    } finally {
      await handle.close();
    }
    const { code, output } = await run(config.shutdownBin, SHUTDOWN_ARGS(runId));
    if (code !== 0)
      throw ApplicationFailure.nonRetryable(
        `${config.shutdownBin} exited ${code}: ${output.slice(-2000)}; the host was not rebooted`,
        'reboot-failed',
      );
    return { bootId: before, scheduled: true };
  }

  return { reboot, bootId };
}

/** argv, never a shell; a minimal environment; output kept to a few KB. */
function run(bin: string, args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    let output = '';
    const child = spawn(bin, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' },
    });
    const keep = (d: Buffer) => (output = (output + d.toString()).slice(-8192));
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.once('error', (err) => resolve({ code: 127, output: err.message }));
    child.once('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), output }));
  });
}
