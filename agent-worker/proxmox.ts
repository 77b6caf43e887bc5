/**
 * The node side of Proxmox VE (docs/proxmox.md): is this agent on a PVE node, which containers
 * does it have, what is each one. Container execution itself is activities/agent/container.ts.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Family } from '../contract';
import type { ContainerReportEntry } from '../contract/proxmox';
import type { ContainerHost } from '../activities/agent/container';
import { Pct, type ContainerConfig } from '../activities/agent/pct';
import type { AgentEnv } from './config';
import { detectFamily, osInfo, parseOsRelease } from './os-release';

/** Containers tagged so (PVE `tags:`, `;`-separated) are never discovered nor patched. */
export const EXCLUDE_TAG = 'patchnanny-exclude';

/**
 * A config's `ostype` (pve-container's LXC setup plugins) → family, when the container's own
 * /etc/os-release cannot be read (it is stopped). `unmanaged` and the rest have no patch script.
 */
const OSTYPE_FAMILY: Record<string, Family> = {
  debian: 'apt',
  devuan: 'apt',
  ubuntu: 'apt',
  fedora: 'dnf',
  centos: 'dnf',
  almalinux: 'dnf',
  rockylinux: 'dnf',
  opensuse: 'zypper',
  archlinux: 'pacman',
};

const RHEL_LINE = /\b(rhel|fedora|centos|rocky|almalinux|ol|amzn)\b/;

export interface ProxmoxNode {
  version: string;
  host: ContainerHost;
  /** The node's containers now, as the API stores them. */
  inventory(): Promise<ContainerReportEntry[]>;
}

/** Null unless `pveversion` runs here (or PATCHNANNY_PVE=off). */
export function detectProxmox(env: AgentEnv): ProxmoxNode | null {
  if (env.PATCHNANNY_PVE === 'off' || !existsSync(env.PATCHNANNY_PVE_PVEVERSION)) return null;
  const r = spawnSync(env.PATCHNANNY_PVE_PVEVERSION, [], { encoding: 'utf8', timeout: 30_000 });
  const version = /^pve-manager\/(\S+)/.exec(r.stdout ?? '')?.[1];
  if (r.status !== 0 || !version) return null;
  const pct = new Pct(env.PATCHNANNY_PVE_PCT);
  const excluded = (vmid: number, config: ContainerConfig) =>
    env.PATCHNANNY_PVE_EXCLUDE.has(vmid) || (config.tags ?? '').split(/[;,\s]+/).includes(EXCLUDE_TAG);

  /** Family from the container's own os-release, else its config's ostype; or why there is none. */
  async function detect(
    vmid: number,
    config: ContainerConfig,
  ): Promise<{ os: ContainerReportEntry['os']; unsupported: string | null; family: Family | null }> {
    const text = await pct.readFile(vmid, '/etc/os-release');
    if (text !== null) {
      const release = parseOsRelease(text);
      const ids = `${release.ID ?? ''} ${release.ID_LIKE ?? ''}`.toLowerCase();
      const rhel = RHEL_LINE.test(ids);
      const has = rhel
        ? {
            dnf: await pct.hasExecutable(vmid, '/usr/bin/dnf'),
            yum: await pct.hasExecutable(vmid, '/usr/bin/yum'),
          }
        : { dnf: false, yum: false };
      const family = detectFamily(release, (cmd) => (cmd === 'dnf' ? has.dnf : cmd === 'yum' ? has.yum : false));
      const name = release.PRETTY_NAME || release.ID || 'unknown OS';
      if (family === null)
        return {
          os: null,
          family: null,
          unsupported: `no patch script for ${name} (os-release ID=${release.ID ?? '?'})`,
        };
      if (typeof family === 'object') return { os: null, family: null, unsupported: `${family.unsupported} (${name})` };
      return { os: osInfo(release, family), family, unsupported: null };
    }
    const ostype = config.ostype ?? '';
    const family = OSTYPE_FAMILY[ostype];
    if (!family)
      return {
        os: null,
        family: null,
        unsupported: `no patch script for ostype ${ostype || '(none)'} (its /etc/os-release could not be read)`,
      };
    return {
      os: { id: ostype, versionId: '', prettyName: `${ostype} (from the container's ostype)`, family },
      family,
      unsupported: null,
    };
  }

  const host: ContainerHost = {
    pct,
    snapshotKeep: env.PATCHNANNY_PVE_SNAPSHOT_KEEP,
    async familyOf(vmid) {
      const config = await pct.config(vmid);
      if (!config) return { unsupported: `container ${vmid} is not on this node` };
      if (excluded(vmid, config)) return { unsupported: `container ${vmid} is excluded from patchnanny on this node` };
      const d = await detect(vmid, config);
      return d.family ?? { unsupported: d.unsupported ?? 'no family detected' };
    },
  };

  async function inventory(): Promise<ContainerReportEntry[]> {
    const out: ContainerReportEntry[] = [];
    for (const listed of await pct.list()) {
      const config = await pct.config(listed.vmid);
      if (!config || excluded(listed.vmid, config)) continue; // destroyed meanwhile, or excluded
      const d = await detect(listed.vmid, config);
      out.push({
        vmid: listed.vmid,
        name: config.hostname ?? listed.name,
        status: listed.status,
        lock: config.lock ?? null,
        os: d.os,
        unsupported: d.unsupported,
      });
    }
    return out;
  }

  return { version, host, inventory };
}
