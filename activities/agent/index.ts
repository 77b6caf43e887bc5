import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { chmod, mkdir, mkdtemp, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { constants as osc, homedir } from 'node:os';
import path from 'node:path';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { z } from 'zod';
import {
  isLegalPackageName,
  SCRIPT_EXIT,
  ScriptResult,
  OutputStepName,
  type Family,
  type RunMode,
  type ScriptExecution,
} from '../../contract';
import { planHash, sha256Hex } from '../../contract/plan-hash';
import { HeadTail, lastLine, outputPipes, tee } from './output';
import { OutputStreamer, type PostChunk, type StreamingOptions } from './stream';
import { createRebootActivities, DEFAULT_REBOOT_CONFIG, type RebootConfig } from './reboot';
import { checkSignatures, SignatureFile, type ScriptSignature, type TrustedKey } from '../../runtime/script-signing';
import {
  containerEnvironment,
  containerExecArgv,
  ContainerTarget,
  prepareContainer,
  rollBack,
  snapshotBeforeApply,
  type ContainerHost,
  type PreparedContainer,
} from './container';

const Sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'a lowercase hex SHA-256');

/** Validated at the boundary: a task on the agent's queue is input from outside the agent. */
export const HashVerifyInput = z.strictObject({
  scriptName: z.string().regex(/^[a-z0-9][a-z0-9.-]*\.sh$/, 'a script name like apt-update.sh'),
  /** The SHA-256 pinned by the control plane when the run was resolved. */
  sha256: Sha256,
  /** Issue 12: a hook script (GET /v1/hooks/:name) instead of a patch script; absent: a patch script. */
  kind: z.enum(['script', 'hook']).optional(),
});
export type HashVerifyInput = z.infer<typeof HashVerifyInput>;

export interface HashVerifyResult {
  sha256: string;
  path: string;
  downloaded: boolean;
  /** Set when a stored copy no longer matched its hash and was replaced: what it hashed to. */
  replacedTampered?: string;
}

/** Any mode but the two is refused: nothing that is not `dry-run` is ever taken to mean apply. */
export const ScriptExecuteInput = z.strictObject({
  runId: z.string().regex(/^[A-Za-z0-9._-]{1,200}$/),
  sha256: Sha256,
  mode: z.enum(['dry-run', 'apply']),
  exclusions: z.array(z.string()).max(1000),
  /** Issue 16: the script's `--security-only`; absent in inputs scheduled before it. */
  securityOnly: z.boolean().optional(),
  heartbeatMs: z.number().int().min(1).max(3_600_000),
  /** Run inside this Proxmox VE container of the agent's node instead of on the host (docs/proxmox.md). */
  container: ContainerTarget.optional(),
  /**
   * Issue 17: the run step the output is stored under. Absent in inputs scheduled before it:
   * `plan` for a dry-run, `apply` for an apply.
   */
  step: OutputStepName.optional(),
});
export type ScriptExecuteInput = z.infer<typeof ScriptExecuteInput>;

/**
 * Issue 12: run a verified hook script (docs/reboot-and-hooks.md) as
 * `<hook> --pre|--post --run-id <runId>`, killed (process group) after `timeoutSeconds`.
 */
export const HookExecuteInput = z.strictObject({
  runId: z.string().regex(/^[A-Za-z0-9._-]{1,200}$/),
  sha256: Sha256,
  phase: z.enum(['pre', 'post']),
  timeoutSeconds: z.number().int().min(1).max(3600),
  heartbeatMs: z.number().int().min(1).max(3_600_000),
});
export type HookExecuteInput = z.infer<typeof HookExecuteInput>;

/** What a hook did: its exit code (124 when it was killed at its timeout, as timeout(1) says) and bounded output. */
export interface HookExecution {
  phase: 'pre' | 'post';
  argv: string[];
  exitCode: number;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/** A hook's output is a health check's verdict, not a package manager's log: 8 KB a stream is kept. */
const HOOK_OUTPUT = 8 * 1024;

/** A fixed PATH: the agent's own PATH says nothing about what a root script should find. */
export const SCRIPT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Refused at the boundary, never retried: the same input would be refused again. */
function parseInput<T>(schema: z.ZodType<T>, raw: unknown, activity: string): T {
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((i) => `${i.path.join('.') || 'input'}: ${i.message}`).join('; ');
  throw ApplicationFailure.nonRetryable(
    `${activity} refused its input (${problems}); nothing executed`,
    'invalid-input',
  );
}

/**
 * The whole environment a script gets (docs/script-contract.md), never the agent's own: the
 * agent's environment holds its credentials, and every script and every package maintainer
 * script it runs as root would inherit them.
 */
export function scriptEnvironment(runId: string, extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {
    PATH: SCRIPT_PATH,
    LANG: 'C.UTF-8',
    LC_ALL: 'C.UTF-8',
    HOME: homedir(),
  };
  if (process.env.TMPDIR) env.TMPDIR = process.env.TMPDIR;
  return { ...env, ...extra, PATCHNANNY_RUN_ID: runId };
}

export interface AgentActivityConfig {
  family: Family;
  /** Agent state folder; verified scripts live in `<stateDir>/scripts/<sha256>`. */
  stateDir: string;
  /** Download a script's content and signatures from the API (authenticated as this agent). */
  fetchScript(name: string): Promise<{ content: string; sha256: string; signatures?: ScriptSignature[] }>;
  /**
   * Ed25519 keys a script must be signed by (runtime/script-signing.ts), on top of matching the
   * pinned SHA-256: the hash says the bytes are what the control plane pinned, the signature that
   * the release key holder wrote them, so a control plane (or database) that was taken over cannot
   * run its own script. Empty: hash only (the agent refuses to start so unless
   * PATCHNANNY_ALLOW_UNSIGNED_SCRIPTS=1; the bench's simulated agents).
   */
  trustedScriptKeys: readonly TrustedKey[];
  /** Interpreter the script runs under (argv[0]); scripts are bash. */
  shell?: string;
  /**
   * Added to the scripts' minimal environment (scriptEnvironment): the variables the agent's
   * PATCHNANNY_SCRIPT_ENV names (proxies, say), and in tests what points fixtures at their state.
   */
  scriptEnv?: Record<string, string>;
  /**
   * How long a stopped dry-run gets between SIGTERM and SIGKILL of its process group: the
   * script's own cleanup (apt: removing the holds it added) may need 30 s. Default 30 s.
   */
  killGraceMs?: number;
  /** Aborted when the agent is shutting down: running dry-runs are stopped, applies are waited for. */
  stopping?: AbortSignal;
  /** Where the agent says what it did on its own (default: stderr); `fields` name the run a line concerns. */
  log?: (line: string, fields?: { runId: string }) => void;
  /** On a Proxmox VE node: its LXC containers, which runs may target (docs/proxmox.md). */
  containers?: ContainerHost;
  /**
   * Issue 17: post a chunk of a running script's output to the API (as this agent). Set, the
   * output goes there and the result carries only its digests; unset (harnesses that run the
   * activities without an API), the result carries the output text as before.
   */
  postOutput?: PostChunk;
  /** Chunk size, flush interval, per-step cap and queue bound of the live output (stream.ts). */
  outputStreaming?: StreamingOptions;
  /** Issue 12: download a hook script (GET /v1/hooks/:name); absent: hooks are refused. */
  fetchHook?(name: string): Promise<{ content: string; sha256: string; signatures?: ScriptSignature[] }>;
  /** Issue 12: how this host reboots and where its boot id is read (the agent's own config); default systemd's. */
  reboot?: RebootConfig;
}

/**
 * Output kept per stream when there is no API to stream it to (config.postOutput unset); the
 * rest is cut from the middle so head and tail both survive. The result travels through Temporal history (which warns above 512 KB a payload), so both streams
 * together stay well below that: an apt dist-upgrade of ~120 packages logs ~60 KB here.
 */
const MAX_OUTPUT = 96 * 1024;

/**
 * stdout carries the one JSON document, which must be read whole: a plan row is ~170 bytes, so
 * 2 MiB holds ~12,000 packages (a full dist-upgrade of a desktop Debian is ~2,000). Beyond it the
 * document is cut, the run gets no result and the record says the contract was broken.
 */
const STDOUT_KEEP = 2 * 1024 * 1024;

const KILL_GRACE_MS = 30_000;

const HASH_MISMATCH = 'script-hash-mismatch';
const STATE_FULL = 'agent-state-full';
const SIGNATURE_INVALID = 'script-signature-invalid';

/** Send a signal to a process group; false when the group is gone. Never throws. */
function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false; // ESRCH: every process of the group has exited
  }
}

/** Scripts running now, so a dying agent can stop its dry-runs (see the exit hook below). */
const running = new Set<ScriptProcess>();
const osSignals: Partial<Record<string, number>> = osc.signals;
let exitHookInstalled = false;

/**
 * A script in its own process group. `closed` resolves with its exit code once it has exited and
 * its output pipes are closed (the package manager it started holds them too).
 */
class ScriptProcess {
  readonly closed: Promise<number>;
  private terminating = false;

  constructor(
    readonly child: ChildProcess,
    readonly mode: RunMode,
    output: Promise<void>[],
  ) {
    running.add(this);
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      // An agent that exits anyway (a crash, a forced stop) leaves no dry-run behind; SIGTERM
      // lets the script clean up. Applies keep running: they are never interrupted.
      process.once('exit', () => {
        for (const s of running) if (s.mode === 'dry-run' && s.child.pid) signalGroup(s.child.pid, 'SIGTERM');
      });
    }
    const exited = new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      // A signal-killed script has no exit code: report it as the shell would (128 + signal).
      child.once('exit', (code, signal) => resolve(code ?? 128 + (signal ? (osSignals[signal] ?? 0) : 0)));
    });
    this.closed = Promise.all([exited, ...output])
      .then(([code]) => code)
      .finally(() => running.delete(this));
  }

  /**
   * SIGTERM the whole process group, then SIGKILL whatever of it is left after `graceMs`. Tracks
   * the group, not the shell: the shell may be gone (exit or signal) while its package manager
   * still runs. Never throws, also not from the timer.
   */
  terminate(graceMs: number): void {
    const pgid = this.child.pid;
    if (this.terminating || pgid === undefined) return;
    this.terminating = true;
    if (!signalGroup(pgid, 'SIGTERM')) return;
    const timer = setTimeout(() => signalGroup(pgid, 'SIGKILL'), graceMs);
    // Once the shell has closed, only a group member that let go of the pipes could be left.
    void this.closed.then(
      () => !signalGroup(pgid, 0) && clearTimeout(timer),
      () => clearTimeout(timer),
    );
  }
}

export function createAgentActivities(config: AgentActivityConfig) {
  const scriptsDir = path.join(config.stateDir, 'scripts');
  const killGraceMs = config.killGraceMs ?? KILL_GRACE_MS;
  const log = config.log ?? ((line: string) => console.error(`[agent] ${line}`));
  const pathFor = (sha256: string) => {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw ApplicationFailure.nonRetryable(`not a sha256: ${sha256}`, HASH_MISMATCH);
    return path.join(scriptsDir, sha256);
  };
  const signed = config.trustedScriptKeys.length > 0;

  /** Refuse bytes no trusted key signed; `what` names them in the failure. */
  function requireSignature(
    content: Buffer,
    signatures: readonly ScriptSignature[],
    what: string,
    outcome = 'not stored, not executed',
  ): void {
    if (!signed) return;
    const check = checkSignatures(content, signatures, config.trustedScriptKeys);
    if (!check.ok)
      throw ApplicationFailure.nonRetryable(`${what} is refused: ${check.reason}; ${outcome}`, SIGNATURE_INVALID);
  }

  /** The signatures stored next to a verified script (`<sha256>.sig`); none when absent or unreadable. */
  async function storedSignatures(sha256: string): Promise<ScriptSignature[]> {
    try {
      const parsed = SignatureFile.safeParse(JSON.parse(await readFile(`${pathFor(sha256)}.sig`, 'utf8')));
      return parsed.success ? parsed.data.signatures : [];
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || err instanceof SyntaxError) return [];
      throw err;
    }
  }

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
    // The signature is checked again on every read: a stored copy is trusted no more than a download.
    requireSignature(content, await storedSignatures(sha256), `stored script ${sha256}`, 'not executed');
    return content;
  }

  /**
   * hash-verify: download the script, check it against the pinned SHA-256 *before* anything is
   * written executable, keep it content-addressed. A matching stored copy is re-used.
   */
  async function hashVerify(raw: HashVerifyInput): Promise<HashVerifyResult> {
    const input = parseInput(HashVerifyInput, raw, 'hash-verify');
    const target = pathFor(input.sha256);
    let replacedTampered: string | undefined;
    try {
      if (await readVerified(input.sha256)) return { sha256: input.sha256, path: target, downloaded: false };
    } catch (err) {
      // A tampered stored copy (or one whose signature no longer verifies: a key was rotated
      // out, the .sig was changed or lost) is removed and fetched again; the fresh copy must verify.
      if (!(err instanceof ApplicationFailure && (err.type === HASH_MISMATCH || err.type === SIGNATURE_INVALID)))
        throw err;
      if (err.type === HASH_MISMATCH) {
        replacedTampered = sha256Hex(await readFile(target));
        log(`stored script ${input.sha256} had been changed (now ${replacedTampered}); removed, fetching it again`);
      } else log(`stored script ${input.sha256}: ${err.message}; removed, fetching it again`);
      await rm(target, { force: true });
      await rm(`${target}.sig`, { force: true });
    }
    if (input.kind === 'hook' && !config.fetchHook)
      throw ApplicationFailure.nonRetryable('this agent does not fetch hooks', 'hooks-unsupported');
    const fetched =
      input.kind === 'hook' ? await config.fetchHook!(input.scriptName) : await config.fetchScript(input.scriptName);
    const content = Buffer.from(fetched.content, 'utf8');
    const actual = sha256Hex(content);
    if (actual !== input.sha256) {
      throw ApplicationFailure.nonRetryable(
        `script ${input.scriptName} downloaded with sha256 ${actual}, pinned ${input.sha256}; not stored, not executed`,
        HASH_MISMATCH,
      );
    }
    // Both: a control plane that replaced a script and its pinned hash together passes the hash
    // check above, never this one (it holds no signing key).
    const signatures = fetched.signatures ?? [];
    requireSignature(content, signatures, `script ${input.scriptName} (sha256 ${actual})`);
    // Written under a unique temporary name and renamed only once complete, so a half-written
    // file (a full disk, a crash) never carries the script's name and is never executed.
    const tmp = `${target}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      await mkdir(scriptsDir, { recursive: true, mode: 0o700 });
      // The signatures first: a script file never stands without them (readVerified re-checks them).
      if (signed)
        await writeFile(`${target}.sig`, JSON.stringify({ signatures } satisfies SignatureFile), { mode: 0o600 });
      const handle = await open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC, 0o600);
      try {
        await handle.writeFile(content);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tmp, target);
    } catch (err) {
      // Nothing half-stored: neither the temporary file nor signatures of a script that is not there.
      await rm(tmp, { force: true });
      if (signed) await rm(`${target}.sig`, { force: true });
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EDQUOT') {
        // Retryable: space may be freed; until then the run fails naming the cause.
        throw ApplicationFailure.retryable(
          `agent state folder ${config.stateDir} is full (${code}) storing script ${input.scriptName}; nothing stored, nothing executed`,
          STATE_FULL,
        );
      }
      throw err;
    }
    if (!(await readVerified(input.sha256))) throw new Error(`script ${input.sha256} vanished after writing`);
    await chmod(target, 0o700);
    return { sha256: input.sha256, path: target, downloaded: true, ...(replacedTampered ? { replacedTampered } : {}) };
  }

  /**
   * script-execute: re-check the stored file's hash right before running it (nothing on disk is
   * trusted between activities), run it with argv, heartbeat progress, parse the JSON result.
   *
   * Cancellation (the run was cancelled, the attempt timed out: Temporal tells the worker when it
   * heartbeats) and agent shutdown stop a dry-run's process group: SIGTERM, then SIGKILL after
   * `killGraceMs` so the script's own cleanup (removing the holds it added) can finish first. An
   * apply is never interrupted by the agent: it runs to its end and its real result is returned.
   */
  async function scriptExecute(raw: ScriptExecuteInput): Promise<ScriptExecution> {
    const input = parseInput(ScriptExecuteInput, raw, 'script-execute');
    const checkExclusions = (family: Family) => {
      for (const name of input.exclusions) {
        if (!isLegalPackageName(family, name)) {
          throw ApplicationFailure.nonRetryable(
            `exclusion ${JSON.stringify(name)} is not a legal ${family} package name`,
            'invalid-exclusion',
          );
        }
      }
    };
    if (!input.container) checkExclusions(config.family);
    // Verified before anything else happens, also before a container is looked at or started.
    const content = await readVerified(input.sha256);
    if (!content)
      throw ApplicationFailure.nonRetryable(
        `script ${input.sha256} is not stored on this agent; hash-verify first`,
        'script-missing',
      );
    if (input.container) {
      if (!config.containers)
        throw ApplicationFailure.nonRetryable(
          `a run for container ${input.container.vmid}, but this agent is not on a Proxmox VE node`,
          'not-a-proxmox-node',
        );
      // Starting, snapshotting (a copy of the root on some storages) and rolling back take time of
      // their own: the activity heartbeats through them as it does while the script runs.
      const ctx = Context.current();
      let step = 'prepare';
      const beat = setInterval(
        () => step !== 'script' && ctx.heartbeat({ container: input.container!.vmid, step }),
        Math.max(200, Math.floor(input.heartbeatMs)),
      );
      try {
        const prepared = await prepareContainer(config.containers, input.container, log);
        try {
          checkExclusions(prepared.family); // the container's own family decides what a legal name is
          if (input.mode === 'apply' && input.container.snapshot !== 'none') {
            step = 'snapshot';
            await snapshotBeforeApply(config.containers, prepared, input.runId, log);
          }
          step = 'script';
          const execution = await executeVerified(input, content, prepared);
          const failed = execution.exitCode !== 0 || !execution.result;
          if (input.mode === 'apply' && failed && input.container.snapshot === 'rollback') {
            step = 'rollback';
            await rollBack(config.containers, prepared, log);
          }
          return { ...execution, container: prepared.report };
        } finally {
          step = 'release';
          await prepared.release();
        }
      } finally {
        clearInterval(beat);
      }
    }
    return executeVerified(input, content, null);
  }

  /** Run verified bytes: on the host (a sealed copy) or inside a prepared container (on stdin). */
  async function executeVerified(
    input: ScriptExecuteInput,
    content: Buffer,
    container: PreparedContainer | null,
  ): Promise<ScriptExecution> {
    const flag = { 'dry-run': '--dry-run', apply: '--apply' }[input.mode];
    const args = [flag];
    if (input.exclusions.length > 0) args.push('--exclude', input.exclusions.join(','));
    if (input.securityOnly === true) args.push('--security-only');

    const ctx = Context.current();
    const started = Date.now();
    // bash reads its script as it goes: it runs the sealed copy of the very bytes just hashed,
    // never the stored file, which could change between the check and bash's reads. In a
    // container, the bytes go on pct's stdin (container.ts says why), nothing is written to disk.
    const sealed = container ? { path: '', remove: () => Promise.resolve() } : await seal(content);
    const argv = [sealed.path, ...args];
    const stdout = new HeadTail(STDOUT_KEEP, MAX_OUTPUT / 2);
    const stderr = new HeadTail(MAX_OUTPUT / 2, MAX_OUTPUT / 2);
    // Issue 17: the output goes to the API as it comes; only its digests go through Temporal.
    const step = input.step ?? (input.mode === 'apply' ? 'apply' : 'plan');
    const attempt = ctx.info.attempt;
    const streamer = config.postOutput
      ? new OutputStreamer(input.runId, step, attempt, config.postOutput, config.outputStreaming, (line) =>
          log(line, { runId: input.runId }),
        )
      : null;
    let script: ScriptProcess;
    try {
      const pipes = await outputPipes(
        streamer ? [tee(stdout, streamer.stdout), tee(stderr, streamer.stderr)] : [stdout, stderr],
      );
      let child: ChildProcess;
      try {
        child = container
          ? spawn(config.containers!.pct.bin, containerExecArgv(container.report.vmid, args), {
              stdio: ['pipe', pipes[0].writeFd, pipes[1].writeFd],
              detached: true,
              env: containerEnvironment(input.runId, config.scriptEnv),
            })
          : spawn(config.shell ?? '/bin/bash', argv, {
              stdio: ['ignore', pipes[0].writeFd, pipes[1].writeFd],
              detached: true, // own process group, so stopping it stops the package manager too
              env: scriptEnvironment(input.runId, config.scriptEnv),
            });
        if (container) {
          // A pct that exits before reading (the container went away) must not crash the agent.
          child.stdin!.on('error', () => undefined);
          child.stdin!.end(content);
        }
      } finally {
        for (const pipe of pipes) pipe.release();
      }
      script = new ScriptProcess(
        child,
        input.mode,
        pipes.map((p) => p.drained),
      );
    } catch (err) {
      await sealed.remove();
      void streamer?.finish();
      throw err;
    }

    const progress = () =>
      ctx.heartbeat({ stdoutBytes: stdout.total, stderrBytes: stderr.total, lastLine: lastLine(stderr.last(4096)) });
    const beat = setInterval(progress, Math.max(200, Math.floor(input.heartbeatMs)));
    let stoppedBy: 'cancellation' | 'shutdown' | null = null;
    const onCancel = () => {
      if (input.mode === 'apply') {
        log(`run ${input.runId}: cancellation (${cancelReason(ctx)}) ignored: an apply is never interrupted`, {
          runId: input.runId,
        });
        return;
      }
      stoppedBy ??= 'cancellation';
      script.terminate(killGraceMs);
    };
    const onShutdown = () => {
      if (input.mode === 'apply') {
        log(`run ${input.runId}: agent stopping; waiting for the running apply to finish`, { runId: input.runId });
        return;
      }
      stoppedBy ??= 'shutdown';
      script.terminate(killGraceMs);
    };
    ctx.cancellationSignal.addEventListener('abort', onCancel);
    config.stopping?.addEventListener('abort', onShutdown);
    if (ctx.cancellationSignal.aborted) onCancel();
    else if (config.stopping?.aborted) onShutdown();

    let exitCode: number;
    try {
      exitCode = await script.closed;
    } finally {
      // Removed once the shell has exited (bash reads its script as it runs, nothing else does).
      await sealed.remove();
      clearInterval(beat);
      ctx.cancellationSignal.removeEventListener('abort', onCancel);
      config.stopping?.removeEventListener('abort', onShutdown);
    }
    // Delivered (or given up on, bounded) before the result: the record never waits for chunks.
    const streamed = streamer ? await streamer.finish() : null;
    if (stoppedBy === 'cancellation') throw ctx.cancellationSignal.reason ?? new Error('cancelled');
    if (stoppedBy === 'shutdown') {
      // Nothing was changed by a dry-run; Temporal retries it once the agent is back.
      throw ApplicationFailure.retryable(
        `agent stopped during the dry-run (script exited ${exitCode}); retried when the agent is back`,
        'agent-shutting-down',
      );
    }

    const stdoutWhole = stdout.whole();
    let result: ScriptResult | null = null;
    const parsed = stdoutWhole ? ScriptResult.safeParse(safeJson(stdoutWhole.toString('utf8'))) : null;
    if (parsed?.success) result = parsed.data;
    const retryable = exitCode === SCRIPT_EXIT.lock || exitCode === SCRIPT_EXIT.refresh;
    if (retryable) {
      // Nothing was changed; Temporal retries with backoff (see the workflow's retry policy).
      throw ApplicationFailure.retryable(
        result?.error?.message ?? `script exited ${exitCode}`,
        exitCode === SCRIPT_EXIT.lock ? 'package-manager-locked' : 'metadata-refresh-failed',
      );
    }
    const contractNote = result
      ? ''
      : stdoutWhole
        ? `\n[patchnanny-agent] stdout (${stdout.total} bytes) is not the script contract's one JSON document\n`
        : `\n[patchnanny-agent] stdout was ${stdout.total} bytes, more than the ${STDOUT_KEEP} the agent reads: ` +
          `its JSON document was cut, so there is no result (script contract broken)\n`;
    const execution: ScriptExecution = {
      mode: input.mode,
      argv: argv.slice(1),
      exitCode,
      // Streamed: no text through Temporal, only the agent's own note (a broken contract).
      ...(streamed
        ? { stdout: '', stderr: contractNote.trim(), output: { step, attempt, ...streamed } }
        : { stdout: stdout.render(MAX_OUTPUT), stderr: stderr.render(MAX_OUTPUT) + contractNote }),
      result,
      planHash: result ? planHash(result.packages) : null,
      durationMs: Date.now() - started,
    };
    if (ctx.cancellationSignal.aborted) {
      // The run may no longer be listening (cancelled, or the attempt timed out): keep the truth here too.
      log(
        `run ${input.runId}: apply finished after cancellation (${cancelReason(ctx)}): exit ${exitCode}, ` +
          `${result?.changed.length ?? '?'} packages changed`,
        { runId: input.runId },
      );
    }
    return execution;
  }

  /**
   * A private copy of verified bytes for one execution: a fresh folder (mkdtemp, 0700) under the
   * agent's 0700 state folder, the file created there exclusively (O_EXCL, O_NOFOLLOW: nothing
   * planted in advance is followed or re-used) from the buffer that was hashed, then read-only.
   */
  async function seal(content: Buffer): Promise<{ path: string; remove: () => Promise<void> }> {
    const execDir = path.join(config.stateDir, 'exec');
    await mkdir(execDir, { recursive: true, mode: 0o700 });
    const dir = await mkdtemp(path.join(execDir, 'run-'));
    const remove = () => rm(dir, { recursive: true, force: true });
    const file = path.join(dir, 'script');
    try {
      const handle = await open(file, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o500);
      try {
        await handle.writeFile(content);
      } finally {
        await handle.close();
      }
    } catch (err) {
      await remove();
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EDQUOT')
        throw ApplicationFailure.retryable(
          `agent state folder ${config.stateDir} is full (${code}) sealing the script; nothing executed`,
          STATE_FULL,
        );
      throw err;
    }
    return { path: file, remove };
  }

  /**
   * hook-execute: a hook is a script like the patch scripts, verified the same way (hash-verify
   * stored it; its hash and signature are checked again here, right before it runs, and the sealed
   * copy of the checked bytes is what runs). Unlike an apply it is interruptible: its timeout, a
   * cancellation or the agent stopping kill its process group.
   */
  async function hookExecute(raw: HookExecuteInput): Promise<HookExecution> {
    const input = parseInput(HookExecuteInput, raw, 'hook-execute');
    const content = await readVerified(input.sha256);
    if (!content)
      throw ApplicationFailure.nonRetryable(
        `hook ${input.sha256} is not stored on this agent; hash-verify first`,
        'script-missing',
      );
    const ctx = Context.current();
    const started = Date.now();
    const args = [`--${input.phase}`, '--run-id', input.runId];
    const sealed = await seal(content);
    const stdout = new HeadTail(HOOK_OUTPUT / 2, HOOK_OUTPUT / 2);
    const stderr = new HeadTail(HOOK_OUTPUT / 2, HOOK_OUTPUT / 2);
    let hook: ScriptProcess;
    try {
      const pipes = await outputPipes([stdout, stderr]);
      try {
        const child = spawn(config.shell ?? '/bin/bash', [sealed.path, ...args], {
          stdio: ['ignore', pipes[0].writeFd, pipes[1].writeFd],
          detached: true,
          env: scriptEnvironment(input.runId, { ...config.scriptEnv, PATCHNANNY_HOOK_PHASE: input.phase }),
        });
        // Stopped like a dry-run when the agent exits: a hook changes no packages.
        hook = new ScriptProcess(
          child,
          'dry-run',
          pipes.map((p) => p.drained),
        );
      } finally {
        for (const pipe of pipes) pipe.release();
      }
    } catch (err) {
      await sealed.remove();
      throw err;
    }
    let timedOut = false;
    const grace = Math.min(killGraceMs, 5000);
    const timer = setTimeout(() => {
      timedOut = true;
      hook.terminate(grace);
    }, input.timeoutSeconds * 1000);
    const beat = setInterval(
      () => ctx.heartbeat({ hook: input.phase, stderrBytes: stderr.total }),
      Math.max(200, Math.floor(input.heartbeatMs)),
    );
    const stop = () => hook.terminate(grace);
    ctx.cancellationSignal.addEventListener('abort', stop);
    config.stopping?.addEventListener('abort', stop);
    let exitCode: number;
    try {
      exitCode = await hook.closed;
    } finally {
      clearTimeout(timer);
      clearInterval(beat);
      ctx.cancellationSignal.removeEventListener('abort', stop);
      config.stopping?.removeEventListener('abort', stop);
      await sealed.remove();
    }
    if (ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason ?? new Error('cancelled');
    return {
      phase: input.phase,
      argv: args,
      exitCode: timedOut ? 124 : exitCode,
      timedOut,
      stdout: stdout.render(HOOK_OUTPUT),
      stderr: stderr.render(HOOK_OUTPUT),
      durationMs: Date.now() - started,
    };
  }

  /** Resolves once no script or hook of this agent runs (checked every 200 ms). */
  async function idle(): Promise<void> {
    while (running.size > 0) await new Promise((r) => setTimeout(r, 200));
  }

  const rebooting = createRebootActivities(config.reboot ?? DEFAULT_REBOOT_CONFIG, config.stateDir, idle, parseInput);

  return { hashVerify, scriptExecute, hookExecute, ...rebooting };
}

/** Why Temporal cancelled an activity, for the agent's log. */
function cancelReason(ctx: Context): string {
  const d = ctx.cancellationDetails;
  if (!d) return 'cancelled';
  const reasons = Object.entries(d).filter(([, v]) => v === true);
  return reasons.map(([k]) => k).join(', ') || 'cancelled';
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
