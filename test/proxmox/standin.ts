/**
 * A Proxmox VE node on a machine that is not one: the `pct` and `pveversion` stand-ins of
 * test/fixtures/pve (never shipped) with their state in a folder of the test's own. Each container
 * is a real root filesystem the stand-in chroots into (an apt sandbox, an rpm root).
 */
import { appendFileSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DIST } from '../support/stack';

const FIXTURES = path.join(DIST, '../test/fixtures/pve');

export interface StandInContainer {
  vmid: number;
  hostname: string;
  root: string;
  ostype: string;
  running: boolean;
  lock?: string;
  /** The rootfs storage id (`local-lvm` by default; `local` is a dir storage that cannot snapshot). */
  storage?: string;
  tags?: string;
}

export class PveStandIn {
  readonly bin: string;

  constructor(
    readonly dir: string,
    readonly nodename = 'pve1',
  ) {
    this.bin = path.join(dir, 'bin');
    for (const d of ['bin', 'lxc', 'rootfs', 'running', 'snapshots']) mkdirSync(path.join(dir, d), { recursive: true });
    writeFileSync(path.join(dir, 'nodename'), `${nodename}\n`);
    writeFileSync(path.join(dir, 'nosnapshot-storages'), 'local\n');
    writeFileSync(path.join(dir, 'calls.log'), '');
    // Wrappers named as on a node, so the agent is configured with paths only (PATCHNANNY_PVE_PCT, …).
    const wrap = (name: string, script: string, args: string) =>
      writeFileSync(path.join(this.bin, name), `#!/bin/bash\nexec ${path.join(FIXTURES, script)} ${args} "$@"\n`, {
        mode: 0o755,
      });
    wrap('pct', 'pct.sh', JSON.stringify(dir));
    wrap('pveversion', 'pveversion.sh', '');
  }

  /** What the agent needs to be this node's agent. */
  get agentEnv(): Record<string, string> {
    return {
      PATCHNANNY_PVE_PCT: path.join(this.bin, 'pct'),
      PATCHNANNY_PVE_PVEVERSION: path.join(this.bin, 'pveversion'),
    };
  }

  add(ct: StandInContainer): void {
    const lines = [
      'arch: amd64',
      'cores: 1',
      `hostname: ${ct.hostname}`,
      'memory: 512',
      `ostype: ${ct.ostype}`,
      `rootfs: ${ct.storage ?? 'local-lvm'}:vm-${ct.vmid}-disk-0,size=8G`,
      ...(ct.tags ? [`tags: ${ct.tags}`] : []),
      ...(ct.lock ? [`lock: ${ct.lock}`] : []),
    ];
    writeFileSync(this.conf(ct.vmid), `${lines.join('\n')}\n`);
    symlinkSync(ct.root, path.join(this.dir, 'rootfs', String(ct.vmid)));
    this.setRunning(ct.vmid, ct.running);
  }

  private conf(vmid: number): string {
    return path.join(this.dir, 'lxc', `${vmid}.conf`);
  }

  setRunning(vmid: number, running: boolean): void {
    const f = path.join(this.dir, 'running', String(vmid));
    if (running) writeFileSync(f, '');
    else {
      this.killInit(vmid);
      rmSync(f, { force: true });
    }
  }

  /** A container `pct start` started has an init (PID 1 of its own namespaces): end it. */
  private killInit(vmid: number): void {
    try {
      const pid = Number(readFileSync(path.join(this.dir, 'running', String(vmid)), 'utf8').trim());
      if (pid > 0) process.kill(pid, 'SIGKILL');
    } catch {
      // not running, or no init (a plain chroot)
    }
  }

  /** Stop every container's init (their mount namespaces hold the roots' /proc). */
  dispose(): void {
    for (const f of readdirSync(path.join(this.dir, 'running'), { withFileTypes: true }))
      if (f.isFile()) this.killInit(Number(f.name));
  }

  isRunning(vmid: number): boolean {
    try {
      readFileSync(path.join(this.dir, 'running', String(vmid)));
      return true;
    } catch {
      return false;
    }
  }

  setLock(vmid: number, lock: string | null): void {
    const kept = readFileSync(this.conf(vmid), 'utf8')
      .split('\n')
      .filter((l) => l && !l.startsWith('lock: '));
    writeFileSync(this.conf(vmid), `${[...kept, ...(lock ? [`lock: ${lock}`] : [])].join('\n')}\n`);
  }

  /** The container leaves the node (destroyed, or migrated to another node). */
  remove(vmid: number): void {
    rmSync(this.conf(vmid));
    rmSync(path.join(this.dir, 'rootfs', String(vmid)));
    this.setRunning(vmid, false);
  }

  /** Every pct call so far, one argv a line. */
  calls(): string[] {
    return readFileSync(path.join(this.dir, 'calls.log'), 'utf8').split('\n').filter(Boolean);
  }

  mark(note: string): void {
    appendFileSync(path.join(this.dir, 'calls.log'), `# ${note}\n`);
  }

  snapshots(vmid: number): string[] {
    try {
      return readdirSync(path.join(this.dir, 'snapshots', String(vmid))).sort();
    } catch {
      return [];
    }
  }
}
