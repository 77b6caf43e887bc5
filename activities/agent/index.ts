import { spawn } from 'node:child_process';
import { constants as fsc } from 'node:fs';
import { chmod, mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure, Context } from '@temporalio/activity';
import {
  isLegalPackageName,
  SCRIPT_EXIT,
  ScriptResult,
  type Family,
  type RunMode,
  type ScriptExecution,
} from '../../contract';
import { planHash, sha256Hex } from '../../contract/plan-hash';

export interface HashVerifyInput {
  scriptName: string;
  /** The SHA-256 pinned by the control plane when the run was resolved. */
  sha256: string;
}

export interface HashVerifyResult {
  sha256: string;
  path: string;
  downloaded: boolean;
}

export interface ScriptExecuteInput {
  runId: string;
  sha256: string;
  mode: RunMode;
  exclusions: string[];
  heartbeatMs: number;
}

export interface AgentActivityConfig {
  family: Family;
  /** Agent state folder; verified scripts live in `<stateDir>/scripts/<sha256>`. */
  stateDir: string;
  /** Download a script's content from the API (authenticated as this agent). */
  fetchScript(name: string): Promise<{ content: string; sha256: string }>;
  /** Interpreter the script runs under (argv[0]); scripts are bash. */
  shell?: string;
  /** Extra environment for scripts (tests point fixtures at their state). */
  scriptEnv?: Record<string, string>;
}

/**
 * Output kept per stream; the rest is cut from the middle so head and tail both survive. The
 * result travels through Temporal history (which warns above 512 KB a payload), so both streams
 * together stay well below that: an apt dist-upgrade of ~120 packages logs ~60 KB here.
 */
const MAX_OUTPUT = 96 * 1024;

const HASH_MISMATCH = 'script-hash-mismatch';

function keepHeadAndTail(text: string): string {
  if (text.length <= MAX_OUTPUT) return text;
  const half = MAX_OUTPUT / 2;
  return `${text.slice(0, half)}\n…[${text.length - MAX_OUTPUT} bytes cut]…\n${text.slice(-half)}`;
}

export function createAgentActivities(config: AgentActivityConfig) {
  const scriptsDir = path.join(config.stateDir, 'scripts');
  const pathFor = (sha256: string) => {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw ApplicationFailure.nonRetryable(`not a sha256: ${sha256}`, HASH_MISMATCH);
    return path.join(scriptsDir, sha256);
  };

  /** Read a stored script and prove it still is what its name says; null when absent. */
  async function readVerified(sha256: string): Promise<Buffer | null> {
    let content: Buffer;
    try {
      content = await readFile(pathFor(sha256));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    const actual = sha256Hex(content);
    if (actual !== sha256) {
      throw ApplicationFailure.nonRetryable(
        `stored script ${sha256} now hashes to ${actual}; refusing to execute`,
        HASH_MISMATCH,
      );
    }
    return content;
  }

  /**
   * hash-verify: download the script, check it against the pinned SHA-256 *before* anything is
   * written executable, keep it content-addressed. A matching stored copy is re-used.
   */
  async function hashVerify(input: HashVerifyInput): Promise<HashVerifyResult> {
    const target = pathFor(input.sha256);
    await mkdir(scriptsDir, { recursive: true, mode: 0o700 });
    try {
      if (await readVerified(input.sha256)) return { sha256: input.sha256, path: target, downloaded: false };
    } catch (err) {
      // A tampered stored copy is removed and fetched again; the fresh copy must verify.
      if (!(err instanceof ApplicationFailure && err.type === HASH_MISMATCH)) throw err;
      await rm(target, { force: true });
    }
    const fetched = await config.fetchScript(input.scriptName);
    const actual = sha256Hex(fetched.content);
    if (actual !== input.sha256) {
      throw ApplicationFailure.nonRetryable(
        `script ${input.scriptName} downloaded with sha256 ${actual}, pinned ${input.sha256}; not stored, not executed`,
        HASH_MISMATCH,
      );
    }
    const tmp = `${target}.${process.pid}.tmp`;
    const handle = await open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC, 0o600);
    try {
      await handle.writeFile(fetched.content);
    } finally {
      await handle.close();
    }
    await rename(tmp, target);
    if (!(await readVerified(input.sha256))) throw new Error(`script ${input.sha256} vanished after writing`);
    await chmod(target, 0o700);
    return { sha256: input.sha256, path: target, downloaded: true };
  }

  /**
   * script-execute: re-check the stored file's hash right before running it (nothing on disk is
   * trusted between activities), run it with argv, heartbeat progress, parse the JSON result.
   */
  async function scriptExecute(input: ScriptExecuteInput): Promise<ScriptExecution> {
    for (const name of input.exclusions) {
      if (!isLegalPackageName(config.family, name)) {
        throw ApplicationFailure.nonRetryable(
          `exclusion ${JSON.stringify(name)} is not a legal ${config.family} package name`,
          'invalid-exclusion',
        );
      }
    }
    const content = await readVerified(input.sha256);
    if (!content)
      throw ApplicationFailure.nonRetryable(
        `script ${input.sha256} is not stored on this agent; hash-verify first`,
        'script-missing',
      );
    const scriptPath = pathFor(input.sha256);
    const argv = [scriptPath, input.mode === 'dry-run' ? '--dry-run' : '--apply'];
    if (input.exclusions.length > 0) argv.push('--exclude', input.exclusions.join(','));

    const ctx = Context.current();
    const started = Date.now();
    const child = spawn(config.shell ?? '/bin/bash', argv, {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // own process group, so cancellation stops the package manager too
      env: { ...process.env, ...config.scriptEnv, PATCHNANNY_RUN_ID: input.runId },
    });
    let stdout = '';
    let stderr = '';
    let lastLine = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      const lines = stderr.trimEnd().split('\n');
      lastLine = lines[lines.length - 1] ?? '';
    });

    const progress = () =>
      ctx.heartbeat({ stdoutBytes: stdout.length, stderrBytes: stderr.length, lastLine: lastLine.slice(0, 200) });
    const beat = setInterval(progress, Math.max(200, Math.floor(input.heartbeatMs)));
    // A child killed by a signal keeps exitCode null and sets signalCode: running means neither is set.
    const running = () => child.exitCode === null && child.signalCode === null;
    const signalGroup = (signal: NodeJS.Signals) => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, signal);
      } catch (err) {
        // ESRCH: the group is already gone (it can be, before the exit event arrives). Thrown
        // here, in a timer or an abort listener, it would crash the agent.
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    };
    const kill = () => {
      if (!running()) return;
      signalGroup('SIGTERM');
      setTimeout(() => running() && signalGroup('SIGKILL'), 10_000).unref();
    };
    ctx.cancellationSignal.addEventListener('abort', kill);

    const exitCode = await new Promise<number>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : -1)));
    }).finally(() => {
      clearInterval(beat);
      ctx.cancellationSignal.removeEventListener('abort', kill);
    });
    if (ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason ?? new Error('cancelled');

    let result: ScriptResult | null = null;
    const parsed = ScriptResult.safeParse(safeJson(stdout));
    if (parsed.success) result = parsed.data;
    const retryable = exitCode === SCRIPT_EXIT.lock || exitCode === SCRIPT_EXIT.refresh;
    if (retryable) {
      // Nothing was changed; Temporal retries with backoff (see the workflow's retry policy).
      throw ApplicationFailure.retryable(
        result?.error?.message ?? `script exited ${exitCode}`,
        exitCode === SCRIPT_EXIT.lock ? 'package-manager-locked' : 'metadata-refresh-failed',
      );
    }
    return {
      mode: input.mode,
      argv: argv.slice(1),
      exitCode,
      stdout: keepHeadAndTail(stdout),
      stderr: keepHeadAndTail(stderr),
      result,
      planHash: result ? planHash(result.packages) : null,
      durationMs: Date.now() - started,
    };
  }

  return { hashVerify, scriptExecute };
}
/** What the workflow proxies on the agent's task queue (its type is checked against this). */
export type AgentActivities = ReturnType<typeof createAgentActivities>;

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
