import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { minbaseTarball, trackMounts, unmountAndRemove, type Generation } from '../generations';
import { exec, must, parseRun, treeFingerprint, type Sandbox, type ScriptRun } from '../sandbox';

/** dist/test/scripts/sandboxes -> the repository root, where the shipped script lives. */
const SCRIPT = path.resolve(__dirname, '../../../../scripts/patch/apt-update.sh');
const SCRIPT_IN_CHROOT = '/opt/patchnanny/apt-update.sh';
/** The local repository inside the chroot: with SECURITY_REPO_IN_CHROOT, the sandbox's apt sources. */
const REPO_IN_CHROOT = '/srv/pn-repo';
/**
 * A second local repository whose Release names a `*-security` suite, as Debian's
 * `bookworm-security` (archive `oldstable-security`): it publishes pn-alpha 2.0-1, the security
 * fix of the fixtures (issue 16).
 */
const SECURITY_REPO_IN_CHROOT = '/srv/pn-security';
const SECURITY_FIX = 'pn-alpha';
/** What a patchnanny agent runs with: no developer locale, no inherited apt settings. */
const CHROOT_ENV: NodeJS.ProcessEnv = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/root',
};

type FixtureVersion = '1.0-1' | '2.0-1' | '3.0-1';
interface Fixture {
  name: string;
  version: FixtureVersion;
  /** Files the package ships, path -> content. */
  files: Record<string, string>;
  postinst?: string;
  depends?: string;
}

const REBOOT_PACKAGE = 'pn-kernel';
/** Owned by pn-stable; the broken pn-alpha 3.0-1 ships it too, so dpkg refuses the upgrade. */
const CONTESTED_FILE = '/usr/share/pn-stable/owned-by-pn-stable';

// Like a kernel package on Ubuntu: ask for a reboot through the flag the apt script reads.
const rebootPostinst = `#!/bin/sh
set -e
if [ "$1" = configure ]; then
  touch /var/run/reboot-required
  echo ${REBOOT_PACKAGE} >> /var/run/reboot-required.pkgs
fi
`;

function fixture(name: string, version: FixtureVersion, extra: Partial<Fixture> = {}): Fixture {
  return { name, version, files: { [`/usr/share/${name}/VERSION`]: `${version}\n` }, ...extra };
}

const installedV1: Fixture[] = [
  fixture('pn-alpha', '1.0-1'),
  fixture('pn-beta', '1.0-1'),
  fixture('pn-stable', '1.0-1', { files: { [CONTESTED_FILE]: 'pn-stable\n' } }),
  fixture(REBOOT_PACKAGE, '1.0-1', { postinst: rebootPostinst }),
];
const publishedV2: Fixture[] = [
  fixture('pn-alpha', '2.0-1'),
  fixture('pn-beta', '2.0-1'),
  fixture('pn-stable', '1.0-1', { files: { [CONTESTED_FILE]: 'pn-stable\n' } }),
  fixture(REBOOT_PACKAGE, '2.0-1', { postinst: rebootPostinst }),
];
const brokenV3 = fixture('pn-alpha', '3.0-1', {
  files: { '/usr/share/pn-alpha/VERSION': '3.0-1\n', [CONTESTED_FILE]: 'pn-alpha\n' },
});
/**
 * An upgrade that needs a package the system does not have yet (as a kernel ABI bump does):
 * `apt-get upgrade` keeps pn-gamma back, `dist-upgrade` installs pn-newdep and upgrades it.
 */
const NEEDS_NEW_DEPENDENCY = {
  installed: fixture('pn-gamma', '1.0-1'),
  published: [fixture('pn-gamma', '2.0-1', { depends: 'pn-newdep' }), fixture('pn-newdep', '1.0-1')],
};

const debFile = (f: Fixture) => `${f.name}_${f.version}_all.deb`;

let fixturesPromise: Promise<string> | undefined;

/** Build every fixture .deb once per process; returns the directory holding them. */
function fixtureDebs(): Promise<string> {
  fixturesPromise ??= (async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'pn-apt-debs-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    const all = [
      ...installedV1,
      ...publishedV2,
      brokenV3,
      NEEDS_NEW_DEPENDENCY.installed,
      ...NEEDS_NEW_DEPENDENCY.published,
    ];
    const unique = new Map(all.map((f) => [debFile(f), f]));
    for (const [file, f] of unique) {
      const tree = path.join(dir, `${f.name}-${f.version}`);
      await mkdir(path.join(tree, 'DEBIAN'), { recursive: true });
      await writeFile(
        path.join(tree, 'DEBIAN/control'),
        [
          `Package: ${f.name}`,
          `Version: ${f.version}`,
          'Architecture: all',
          'Maintainer: patchnanny tests <tests@patchnanny.invalid>',
          'Priority: optional',
          'Section: misc',
          ...(f.depends ? [`Depends: ${f.depends}`] : []),
          `Description: patchnanny apt fixture ${f.name} ${f.version}`,
          '',
        ].join('\n'),
      );
      if (f.postinst) await writeFile(path.join(tree, 'DEBIAN/postinst'), f.postinst, { mode: 0o755 });
      for (const [shipped, content] of Object.entries(f.files)) {
        const target = path.join(tree, shipped);
        await mkdir(path.dirname(target), { recursive: true });
        await writeFile(target, content);
      }
      await must('dpkg-deb', ['--root-owner-group', '-Zgzip', '--build', tree, path.join(dir, file)]);
    }
    return dir;
  })();
  return fixturesPromise;
}

/** A debootstrap'd Debian chroot of one generation with the fixtures installed and a local file: repo. */
export class AptSandbox implements Sandbox {
  readonly family = 'apt' as const;
  readonly rebootPackage = REBOOT_PACKAGE;
  readonly securityData = 'suite' as const;
  private dir: string | undefined;
  private untrack: (() => void) | undefined;

  constructor(readonly generation: Generation = 'bookworm') {}

  /** The chroot: the system the script patches (`chroot <root> …` runs inside it). */
  get root(): string {
    if (!this.dir) throw new Error('sandbox not created');
    return path.join(this.dir, 'root');
  }

  async create(): Promise<void> {
    const [base, debs] = await Promise.all([minbaseTarball(this.generation), fixtureDebs()]);
    this.dir = await mkdtemp(path.join(tmpdir(), `pn-apt-${this.generation}-`));
    const root = this.root;
    this.untrack = trackMounts(this.dir);
    // A tmpfs per sandbox: unpacking 120 MB and dpkg's fsyncs cost seconds on disk, nothing here,
    // and dispose unmounts it instead of deleting a tree.
    await must('mount', ['-t', 'tmpfs', '-o', 'size=2g,mode=0755', 'pn-apt-sandbox', this.dir]);
    await mkdir(root);
    await must('tar', ['-C', root, '-xf', base]);
    // apt's _apt user must be able to walk the chroot's /.
    await chmod(root, 0o755);

    await must('mount', ['-t', 'proc', 'proc', path.join(root, 'proc')]);
    await must('mount', ['--bind', '/dev', path.join(root, 'dev')]);

    const staging = path.join(root, 'tmp/pn-v1');
    await mkdir(staging);
    for (const f of installedV1) await copyFile(path.join(debs, debFile(f)), path.join(staging, debFile(f)));
    await must('chroot', [root, 'dpkg', '-i', ...installedV1.map((f) => `/tmp/pn-v1/${debFile(f)}`)], {
      env: CHROOT_ENV,
    });
    await rm(staging, { recursive: true });
    // The host was rebooted after provisioning: v1 of the reboot package asked for one too.
    await rm(path.join(root, 'run/reboot-required'), { force: true });
    await rm(path.join(root, 'run/reboot-required.pkgs'), { force: true });

    const repo = path.join(root, REPO_IN_CHROOT);
    const security = path.join(root, SECURITY_REPO_IN_CHROOT);
    await mkdir(repo, { recursive: true });
    await mkdir(security, { recursive: true });
    for (const f of publishedV2) {
      const target = f.name === SECURITY_FIX && f.version === '2.0-1' ? security : repo;
      await copyFile(path.join(debs, debFile(f)), path.join(target, debFile(f)));
    }
    await this.writeIndex();
    await this.writeIndex(SECURITY_REPO_IN_CHROOT, 'pn-fixtures-security');
    const apt = path.join(root, 'etc/apt');
    for (const f of await readdir(path.join(apt, 'sources.list.d'))) await rm(path.join(apt, 'sources.list.d', f));
    await writeFile(
      path.join(apt, 'sources.list'),
      `deb [trusted=yes] file:${REPO_IN_CHROOT} ./\ndeb [trusted=yes] file:${SECURITY_REPO_IN_CHROOT} ./\n`,
    );
    // Installed once: a copy per run would change the tree that fingerprint() compares.
    await mkdir(path.join(root, path.dirname(SCRIPT_IN_CHROOT)), { recursive: true });
    await copyFile(SCRIPT, path.join(root, SCRIPT_IN_CHROOT));
  }

  /**
   * Install pn-gamma 1.0-1 and publish pn-gamma 2.0-1, which depends on pn-newdep (published,
   * not installed): `apt-get upgrade` keeps it back, `dist-upgrade` takes it.
   */
  async publishUpgradeWithNewDependency(): Promise<void> {
    const debs = await fixtureDebs();
    const { installed, published } = NEEDS_NEW_DEPENDENCY;
    await copyFile(path.join(debs, debFile(installed)), path.join(this.root, 'tmp', debFile(installed)));
    await must('chroot', [this.root, 'dpkg', '-i', `/tmp/${debFile(installed)}`], { env: CHROOT_ENV });
    await rm(path.join(this.root, 'tmp', debFile(installed)));
    for (const f of published)
      await copyFile(path.join(debs, debFile(f)), path.join(this.root, REPO_IN_CHROOT, debFile(f)));
    await this.writeIndex();
  }

  /** Packages + Release of the flat repository (Release names the suite apt reports as repo). */
  private async writeIndex(inChroot = REPO_IN_CHROOT, suite = 'pn-fixtures'): Promise<void> {
    const repo = path.join(this.root, inChroot);
    const packages = await must('dpkg-scanpackages', ['--multiversion', '.', '/dev/null'], { cwd: repo });
    await writeFile(path.join(repo, 'Packages'), packages);
    const size = Buffer.byteLength(packages);
    const digest = (algo: string) => createHash(algo).update(packages).digest('hex');
    const release = [
      'Origin: patchnanny',
      'Label: patchnanny-fixtures',
      `Suite: ${suite}`,
      `Codename: ${suite}`,
      `Date: ${new Date().toUTCString().replace('GMT', 'UTC')}`,
      'Architectures: all amd64',
      'MD5Sum:',
      ` ${digest('md5')} ${size} Packages`,
      'SHA256:',
      ` ${digest('sha256')} ${size} Packages`,
      '',
    ].join('\n');
    await writeFile(path.join(repo, 'Release'), release);
  }

  async run(args: string[]): Promise<ScriptRun> {
    return parseRun(await exec('chroot', [this.root, 'bash', SCRIPT_IN_CHROOT, ...args], { env: CHROOT_ENV }));
  }

  async installedVersion(name: string): Promise<string | null> {
    const r = await exec('chroot', [this.root, 'dpkg-query', '-W', '-f', '${db:Status-Abbrev}\t${Version}', name], {
      env: CHROOT_ENV,
    });
    if (r.code !== 0) return null;
    const [status = '', version = ''] = r.stdout.split('\t');
    return status[1] === 'n' || status[1] === 'c' || !version ? null : version;
  }

  async addHold(name: string): Promise<void> {
    await must('chroot', [this.root, 'apt-mark', 'hold', name], { env: CHROOT_ENV });
  }

  async hasHold(name: string): Promise<boolean> {
    const held = await must('chroot', [this.root, 'apt-mark', 'showhold'], { env: CHROOT_ENV });
    return held.split('\n').some((line) => line.trim().split(':')[0] === name);
  }

  async publishBroken(): Promise<void> {
    const debs = await fixtureDebs();
    await copyFile(path.join(debs, debFile(brokenV3)), path.join(this.root, REPO_IN_CHROOT, debFile(brokenV3)));
    await this.writeIndex();
  }

  async managerVersion(): Promise<string> {
    const r = await exec('chroot', [this.root, 'apt-get', '--version'], { env: CHROOT_ENV });
    return /^apt \S+/.exec(r.stdout)?.[0] ?? 'apt ?';
  }

  version(n: 1 | 2): string {
    return `${n}.0-1`;
  }

  fingerprint(): Promise<string> {
    return treeFingerprint(this.root);
  }

  /** Unmount (lazily if busy) and delete; refuses to delete while anything is still mounted. */
  async dispose(): Promise<void> {
    if (!this.dir) return;
    // --one-file-system: even a mount that appeared meanwhile is never descended into.
    await unmountAndRemove(this.dir);
    this.untrack?.();
    this.dir = undefined;
  }
}
