/**
 * The node agent's side of Proxmox VE (docs/proxmox.md): every container operation is one `pct`
 * call with argv, never a shell string. Only the subcommands listed in the README's Proxmox
 * section are used: list, config, status, exec, start, shutdown, snapshot, listsnapshot,
 * rollback, delsnapshot. Formats and messages are pve-container's (src/PVE/CLI/pct.pm) and
 * pve-guest-common's (AbstractConfig.pm): pct exits 255 with the message on stderr.
 */
import { spawn } from 'node:child_process';

export interface PctResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** What a container's configuration says about it (`pct config <vmid>`). */
export type ContainerConfig = Record<string, string>;

/** A line of `pct list`: "%-10s %-10s %-12s %-20s" of vmid, status, lock, name; the lock may be blank. */
export interface ListedContainer {
  vmid: number;
  status: 'running' | 'stopped' | 'unknown';
  lock: string | null;
  name: string;
}

/** `load_config` of a container that is not (any more) on this node. */
const GONE = /Configuration file '[^']*' does not exist/;
/** `check_lock`: "CT is locked (backup)". */
const LOCKED = /CT is locked \(([^)]+)\)/;
const NOT_RUNNING = /container '\d+' not running!/;
const NO_SNAPSHOT = /snapshot feature is not available/;

export class PctError extends Error {
  constructor(
    readonly args: readonly string[],
    readonly result: PctResult,
  ) {
    super(`pct ${args.join(' ')} exited ${result.code}: ${result.stderr.trim().split('\n').at(-1) ?? ''}`);
  }
  get gone(): boolean {
    return GONE.test(this.result.stderr);
  }
  get locked(): string | null {
    return LOCKED.exec(this.result.stderr)?.[1] ?? null;
  }
  get notRunning(): boolean {
    return NOT_RUNNING.test(this.result.stderr);
  }
  get snapshotUnsupported(): boolean {
    return NO_SNAPSHOT.test(this.result.stderr);
  }
}

/** The environment `pct` gets (exec passes it into the container: pct's --keep-env default). */
export const PCT_ENV: Record<string, string> = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  LANG: 'C.UTF-8',
  LC_ALL: 'C.UTF-8',
  HOME: '/root',
};

export class Pct {
  constructor(
    /** `/usr/sbin/pct` on a node (PATCHNANNY_PVE_PCT). */
    readonly bin: string,
    private readonly timeoutMs = 120_000,
  ) {}

  /** Run pct with argv; never throws for an exit code (see `must`). */
  run(args: readonly string[], env: Record<string, string> = PCT_ENV): Promise<PctResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(this.bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'], timeout: this.timeoutMs });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : -1), stdout, stderr }));
    });
  }

  async must(args: readonly string[]): Promise<string> {
    const r = await this.run(args);
    if (r.code !== 0) throw new PctError(args, r);
    return r.stdout;
  }

  async list(): Promise<ListedContainer[]> {
    const out = await this.must(['list']);
    const rows: ListedContainer[] = [];
    for (const line of out.split('\n').slice(1)) {
      const words = line.trim().split(/\s+/).filter(Boolean);
      if (words.length < 2 || !/^\d+$/.test(words[0])) continue;
      // The lock column is blank for an unlocked container: three words then, four with a lock.
      const [vmid, status, ...rest] = words;
      const lock = rest.length >= 2 ? rest[0] : null;
      const name = rest.length >= 2 ? rest.slice(1).join(' ') : (rest[0] ?? '');
      rows.push({
        vmid: Number(vmid),
        status: status === 'running' || status === 'stopped' ? status : 'unknown',
        lock,
        name,
      });
    }
    return rows;
  }

  /** The current configuration ("key: value" lines); null when the container is not on this node. */
  async config(vmid: number): Promise<ContainerConfig | null> {
    const args = ['config', String(vmid)];
    const r = await this.run(args);
    if (r.code !== 0) {
      const err = new PctError(args, r);
      if (err.gone) return null;
      throw err;
    }
    const config: ContainerConfig = {};
    for (const line of r.stdout.split('\n')) {
      const m = /^([a-z0-9]+): (.*)$/.exec(line);
      if (m) config[m[1]] = m[2];
    }
    return config;
  }

  /** `status: running` → running; null when the container is gone. */
  async status(vmid: number): Promise<'running' | 'stopped' | 'unknown' | null> {
    const args = ['status', String(vmid)];
    const r = await this.run(args);
    if (r.code !== 0) {
      const err = new PctError(args, r);
      if (err.gone) return null;
      throw err;
    }
    const s = /^status: (\S+)/m.exec(r.stdout)?.[1];
    return s === 'running' || s === 'stopped' ? s : 'unknown';
  }

  /** A file of the container read with the container's own `cat`; null when it cannot be read. */
  async readFile(vmid: number, file: string): Promise<string | null> {
    const r = await this.run(['exec', String(vmid), '--', 'cat', '--', file]);
    return r.code === 0 ? r.stdout : null;
  }

  /** Whether an executable exists in the container (`test -x`). */
  async hasExecutable(vmid: number, file: string): Promise<boolean> {
    return (await this.run(['exec', String(vmid), '--', 'test', '-x', file])).code === 0;
  }

  /** Snapshot names, oldest first (`pct listsnapshot` prints the chain oldest first, then "current"). */
  async snapshots(vmid: number): Promise<string[]> {
    const out = await this.must(['listsnapshot', String(vmid)]);
    const names: string[] = [];
    for (const line of out.split('\n')) {
      const m = /^\s*`->\s+(\S+)/.exec(line);
      if (m && m[1] !== 'current') names.push(m[1]);
    }
    return names;
  }
}
