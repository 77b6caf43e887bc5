/**
 * A container root filesystem built from this machine's own /usr (an overlay, so whatever the
 * container installs lands in its own upper layer and the host's /usr is never written) with an
 * /etc, /var and package database of its own: `chroot` into it runs real dnf and rpm against the
 * container's own rpm database. /proc and /dev are mounted as the apt proof does and unmounted by
 * dispose(). Used for the rpm-family container (a Rocky Linux os-release) and an unsupported one.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { exec, must } from '../scripts/sandbox';
import { buildRpmFixtures, rpmFileName, type RpmFixture } from '../scripts/sandboxes/rpm-fixtures';

const live = new Set<string>();
process.once('exit', () => {
  for (const dir of live) for (const m of mountsUnder(dir).reverse()) spawnSync('umount', ['-l', m]);
});

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((m): m is string => !!m && (m === dir || m.startsWith(`${dir}/`)))
    .sort((a, b) => a.length - b.length);
}

export class OverlayRoot {
  protected base = '';

  constructor(private readonly osRelease: Record<string, string>) {}

  get root(): string {
    return path.join(this.base, 'root');
  }

  async create(): Promise<void> {
    this.base = await mkdtemp(path.join(tmpdir(), 'pn-pve-root-'));
    live.add(this.base);
    const root = this.root;
    for (const d of ['usr', 'etc', 'var/tmp', 'tmp', 'proc', 'dev', 'root', 'run', 'srv'])
      await mkdir(path.join(root, d), { recursive: true });
    await chmod(path.join(root, 'tmp'), 0o1777);
    for (const d of ['bin', 'sbin', 'lib', 'lib64']) await symlink(`usr/${d}`, path.join(root, d));
    await mkdir(path.join(this.base, 'upper'));
    await mkdir(path.join(this.base, 'work'));
    await must('mount', [
      '-t',
      'overlay',
      'pn-pve-usr',
      '-o',
      `lowerdir=/usr,upperdir=${path.join(this.base, 'upper')},workdir=${path.join(this.base, 'work')}`,
      path.join(root, 'usr'),
    ]);
    await must('cp', ['-a', '/etc/.', path.join(root, 'etc/')]);
    const release = `${Object.entries(this.osRelease)
      .map(([k, v]) => `${k}="${v}"`)
      .join('\n')}\n`;
    await rm(path.join(root, 'etc/os-release'), { force: true });
    await writeFile(path.join(root, 'etc/os-release'), release);
    await writeFile(path.join(root, 'usr/lib/os-release'), release);
    await must('mount', ['-t', 'proc', 'proc', path.join(root, 'proc')]);
    await must('mount', ['--bind', '/dev', path.join(root, 'dev')]);
  }

  async dispose(): Promise<void> {
    if (!this.base) return;
    for (const m of mountsUnder(this.base).reverse()) {
      const r = await exec('umount', [m]);
      if (r.code !== 0) await exec('umount', ['-l', m]);
    }
    const left = mountsUnder(this.base);
    if (left.length > 0) throw new Error(`${this.base} still has mounts: ${left.join(', ')}`);
    live.delete(this.base);
    await must('rm', ['-rf', '--one-file-system', this.base]);
    this.base = '';
  }
}

const FIXTURES: RpmFixture[] = [
  ...['pn-alpha', 'pn-beta', 'pn-stable', 'kernel-pn'].map((name) => ({ name, version: '1.0' })),
  ...['pn-alpha', 'pn-beta', 'kernel-pn'].map((name) => ({ name, version: '2.0' })),
];
/** Long before this machine's boot, so only what a run installs counts as installed since. */
const PROVISIONED_AT = 1_700_000_000;
let rpms: Promise<string> | undefined;

/** A Rocky Linux 9 container: v1 fixtures installed in its own rpm database, v2 in its updates repository. */
export class RpmRoot extends OverlayRoot {
  /** `provisionedAt`: the v1 packages' install time (epoch s); `now`: installed at create(), after the node's boot. */
  constructor(private readonly provisionedAt: number | 'now' = PROVISIONED_AT) {
    super({
      NAME: 'Rocky Linux',
      ID: 'rocky',
      ID_LIKE: 'rhel centos fedora',
      VERSION_ID: '9.4',
      PRETTY_NAME: 'Rocky Linux 9.4 (Blue Onyx)',
    });
  }

  override async create(): Promise<void> {
    rpms ??= buildRpmFixtures('pn-pve-rpms', FIXTURES);
    const dir = await rpms;
    await super.create();
    const root = this.root;
    await rm(path.join(root, 'etc/yum.repos.d'), { recursive: true, force: true });
    await rm(path.join(root, 'etc/dnf'), { recursive: true, force: true });
    await mkdir(path.join(root, 'etc/yum.repos.d'));
    await mkdir(path.join(root, 'etc/dnf'));
    await writeFile(
      path.join(root, 'etc/dnf/dnf.conf'),
      '[main]\ngpgcheck=1\ninstallonly_limit=3\nbest=True\nskip_if_unavailable=False\n',
    );
    await must(
      'rpm',
      ['--root', root, '-i', ...FIXTURES.filter((f) => f.version === '1.0').map((f) => path.join(dir, rpmFileName(f)))],
      {
        env: {
          ...process.env,
          ...(this.provisionedAt === 'now' ? {} : { SOURCE_DATE_EPOCH: String(this.provisionedAt) }),
        },
      },
    );
    for (const [id, version] of [
      ['base', '1.0'],
      ['updates', '2.0'],
    ] as const) {
      const repo = path.join(root, 'srv/pn-repo', id);
      await mkdir(repo, { recursive: true });
      for (const f of FIXTURES.filter((x) => x.version === version))
        await copyFile(path.join(dir, rpmFileName(f)), path.join(repo, rpmFileName(f)));
      await must('createrepo_c', ['--quiet', repo]);
      await writeFile(
        path.join(root, 'etc/yum.repos.d', `pn-${id}.repo`),
        `[pn-${id}]\nname=patchnanny ${id}\nbaseurl=file:///srv/pn-repo/${id}\ngpgcheck=0\nenabled=1\n`,
      );
    }
  }

  async installedVersion(name: string): Promise<string | null> {
    const r = await exec('chroot', [this.root, 'rpm', '-q', '--qf', '%{VERSION}-%{RELEASE}\\n', name], {
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root' },
    });
    return r.code === 0 ? r.stdout.trim() : null;
  }

  /** When a package was installed (rpm's INSTALLTIME, epoch seconds). */
  async installTime(name: string): Promise<number> {
    const out = await must('chroot', [this.root, 'rpm', '-q', '--qf', '%{INSTALLTIME}\\n', name], {
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root' },
    });
    return Number(out.trim());
  }

  /** Every installed package with its version (rpm -qa), sorted. */
  async installed(): Promise<string> {
    const out = await must('chroot', [this.root, 'rpm', '-qa', '--qf', '%{NAME} %{VERSION}-%{RELEASE}\\n'], {
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root' },
    });
    return out.split('\n').filter(Boolean).sort().join('\n');
  }

  /** The container's rpm database, byte for byte (Debian's rpm keeps it in ~/.rpmdb: /root/.rpmdb inside). */
  packageDb(): string {
    return digestTree(path.join(this.root, 'root/.rpmdb'));
  }
}

/** SHA-256 over every file's path and bytes below dir. */
export function digestTree(dir: string): string {
  const h = createHash('sha256');
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = path.join(d, name);
      const st = statSync(p);
      if (st.isDirectory()) walk(p);
      else h.update(`${path.relative(dir, p)}\0`).update(readFileSync(p));
    }
  };
  walk(dir);
  return h.digest('hex');
}
