import type { Family, OsInfo } from '../contract';

/** Parse /etc/os-release (KEY=value, optionally quoted) into a map. */
export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (!m) continue;
    let v = m[2];
    if ((v.startsWith('"') && v.endsWith('"')) || (v.startsWith("'") && v.endsWith("'"))) v = v.slice(1, -1);
    out[m[1]] = v.replace(/\\(["'$`\\])/g, '$1');
  }
  return out;
}

/** A system detection recognises but patchnanny cannot patch, and the reason to give at enrolment. */
export interface Unsupported {
  unsupported: string;
}

export const YUM3_UNSUPPORTED = 'yum 3 (EL 7) is not supported: patchnanny needs dnf 4 (EL 8+)';

/**
 * Map an os-release to the package-manager family that patches it. `hasCommand` tells whether a
 * binary exists (dnf vs yum on the RHEL line). Returns null for systems we do not know, and
 * `{ unsupported }` for the RHEL line without dnf: that is EL 7's yum 3, which dnf-update.sh
 * would refuse at every run, so the agent refuses it once, at enrolment.
 */
export function detectFamily(
  osRelease: Record<string, string>,
  hasCommand: (cmd: string) => boolean,
): Family | Unsupported | null {
  const ids = [osRelease.ID ?? '', ...(osRelease.ID_LIKE ?? '').split(/\s+/)]
    .map((s) => s.toLowerCase())
    .filter(Boolean);
  const is = (...names: string[]) => ids.some((id) => names.includes(id));
  if (is('debian', 'ubuntu')) return 'apt';
  if (is('rhel', 'fedora', 'centos', 'rocky', 'almalinux', 'ol', 'amzn')) {
    const major = Number.parseInt(osRelease.VERSION_ID ?? '', 10);
    if (osRelease.ID === 'fedora' || hasCommand('dnf')) return 'dnf';
    // EL 8+ ships dnf with yum as a link to it: a yum without dnf there is still dnf 4.
    if (Number.isFinite(major) && major >= 8 && hasCommand('yum')) return 'yum';
    return { unsupported: YUM3_UNSUPPORTED };
  }
  if (is('suse', 'sles', 'opensuse', 'opensuse-leap', 'opensuse-tumbleweed')) return 'zypper';
  if (is('arch', 'archlinux', 'manjaro', 'endeavouros')) return 'pacman';
  return null;
}

export function osInfo(osRelease: Record<string, string>, family: Family): OsInfo {
  return {
    id: osRelease.ID ?? 'linux',
    versionId: osRelease.VERSION_ID ?? '',
    prettyName: osRelease.PRETTY_NAME ?? '',
    family,
  };
}
