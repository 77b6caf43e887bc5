import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';

export type Family = 'apt' | 'dnf' | 'yum' | 'zypper' | 'pacman';

export interface ScriptRun {
  code: number;
  stdout: string;
  stderr: string;
  /** The parsed stdout JSON document (the contract says there is always exactly one). */
  json: ScriptJson;
}

export interface ScriptPackage {
  name: string;
  arch: string;
  current: string | null;
  candidate: string | null;
  repo: string;
  action: string;
  security: boolean | null;
  advisories: { id: string; severity: string | null }[];
}

export interface ScriptJson {
  contract: number;
  manager: string;
  mode: string | null;
  packages: ScriptPackage[];
  held: ScriptPackage[];
  changed: { name: string; arch: string; from: string | null; to: string | null }[];
  reboot_required: boolean;
  reboot_reason: string | null;
  manager_exit_code: number | null;
  error: { code: string; message: string } | null;
}

/**
 * A hermetic system of one package family with a local repository.
 *
 * Fixture packages every sandbox provides (versions are the family's own spelling of 1.0 / 2.0):
 * - `pn-alpha`, `pn-beta`: version 1 installed, version 2 published (upgradable).
 * - `pn-stable`: version 1 installed, nothing newer (must never appear in a plan).
 * - `rebootPackage` (name chosen per family so that the family's reboot detection fires, e.g. an
 *   apt package whose postinst touches /var/run/reboot-required, or a kernel-named rpm): version 1
 *   installed, version 2 published.
 */
export interface Sandbox {
  readonly family: Family;
  /** The Debian generation whose package manager the proof drives (`bookworm`, `sid`). */
  readonly generation: string;
  /** The proof matrix's row when it is not the family (`dnf (dnf5)`). */
  readonly matrixRow?: string;
  /** The manager and its version as the manager says it (`apt 3.0.3`), for the proof matrix. */
  managerVersion?(): Promise<string>;
  /**
   * What the family's fixture repositories say about security (issue 16): `advisories` — real
   * updateinfo naming pn-alpha 2 a security fix (Important) and pn-beta 2 a bug fix (dnf, yum);
   * `patches` — the same updateinfo, read by zypper as patches of category security / recommended;
   * `suite` — pn-alpha 2 published in a `*-security` suite (apt); `none` — the manager has no
   * advisory data (pacman).
   */
  readonly securityData: 'advisories' | 'patches' | 'suite' | 'none';
  /** Name of the fixture package whose upgrade must set reboot_required. */
  readonly rebootPackage: string;
  /** Build a fresh system: v1 fixtures installed, v2 published in its local repo. */
  create(): Promise<void>;
  /** Run the shipped script against the sandbox with these arguments (argv, never a shell string). */
  run(args: string[]): Promise<ScriptRun>;
  /** Installed version of a package in the sandbox (family spelling, e.g. `2.0-1`), null when absent. */
  installedVersion(name: string): Promise<string | null>;
  /** Put a pre-existing hold/lock/ignore on a package, the way an admin would. */
  addHold(name: string): Promise<void>;
  /** Whether that pre-existing hold/lock/ignore is in place. */
  hasHold(name: string): Promise<boolean>;
  /**
   * Publish a version 3 of `pn-alpha` whose transaction must fail (for example it ships a file
   * owned by `pn-stable`), so apply exercises the manager's failure path.
   */
  publishBroken(): Promise<void>;
  /** The family's version string for fixture version `1` or `2` of a package. */
  version(n: 1 | 2): string;
  /**
   * A digest of every path of the system (installed packages, package database, metadata cache,
   * configuration): equal before and after a run only when the run wrote nothing at all.
   */
  fingerprint(): Promise<string>;
  /** Remove everything the sandbox created. */
  dispose(): Promise<void>;
}

/** Spawn a command with argv, capture output; never through a shell. */
export function exec(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // stdin is closed unless there is input: a child that exits before reading a pipe would turn
    // the write into an EPIPE (seen in ~1 of 4 runs of `true`).
    const stdin = opts.input === undefined ? 'ignore' : 'pipe';
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: [stdin, 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    if (child.stdin) {
      child.stdin.on('error', () => undefined);
      child.stdin.end(opts.input);
    }
  });
}

/** exec, throwing with the captured output when the command fails. */
export async function must(cmd: string, args: string[], opts: Parameters<typeof exec>[2] = {}): Promise<string> {
  const r = await exec(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}\n${r.stderr}\n${r.stdout}`);
  return r.stdout;
}

/**
 * Every path under `dir` with its type, mode, owner, size, modification time and link target,
 * sorted, as one sha256. `-xdev` stays off mounts (a chroot's /proc and /dev).
 */
export async function treeFingerprint(dir: string): Promise<string> {
  const listing = await must('find', [dir, '-xdev', '-printf', '%P\\t%y\\t%m\\t%U:%G\\t%s\\t%T@\\t%l\\n']);
  const sorted = listing.split('\n').sort().join('\n');
  return createHash('sha256').update(sorted).digest('hex');
}

/** Parse a script run's stdout as the contract's single JSON document. */
export function parseRun(r: { code: number; stdout: string; stderr: string }): ScriptRun {
  let json: ScriptJson;
  try {
    json = JSON.parse(r.stdout) as ScriptJson;
  } catch (err) {
    throw new Error(
      `script stdout is not one JSON document (exit ${r.code}): ${String(err)}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`,
      { cause: err },
    );
  }
  return { ...r, json };
}
