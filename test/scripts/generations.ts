/**
 * The Debian generations the patch scripts are proven on (issue 16), and the systems the proofs
 * run the package managers in:
 *
 * - the apt proof chroots into a minbase root of the generation (`minbaseTarball`);
 * - the rpm, zypper and pacman proofs run the managers Debian packages for that generation: on
 *   this machine when it is that generation, otherwise inside a root of it with the managers
 *   installed (`generationHost`), each sandbox a directory inside that root as on the host.
 *
 * Every root is built once from this machine's Debian mirror and cached outside the clone
 * (`~/.cache/patchnanny/debootstrap/`); a process uses a root through an overlay mount whose
 * upper layer is a tmpfs, so the cache is never written to and costs nothing to throw away.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { exec, must } from './sandbox';

export const GENERATIONS = ['bullseye', 'bookworm', 'trixie', 'sid'] as const;
export type Generation = (typeof GENERATIONS)[number];

/** The generation of this machine (its /etc/os-release), where no extra root is needed. */
export const HOST_GENERATION: string = (() => {
  try {
    const m = /^VERSION_CODENAME=(.*)$/m.exec(readFileSync('/etc/os-release', 'utf8'));
    return m ? m[1].replace(/"/g, '') : 'unknown';
  } catch {
    return 'unknown';
  }
})();

/** Debian packages each generation's managers root gets (see scripts/dev/install-test-deps.sh for the host). */
const COMMON_PACKAGES = [
  'rpm',
  'dnf',
  'createrepo-c',
  'zypper',
  'pacman-package-manager',
  'libarchive-tools',
  // repo-add's shell libraries (only recommended by pacman-package-manager)
  'makepkg',
];
export const MANAGER_PACKAGES: Record<Generation, string[]> = {
  bullseye: [],
  bookworm: COMMON_PACKAGES,
  trixie: COMMON_PACKAGES,
  // In sid `dnf` is still dnf 4; dnf5 is its own package and binary.
  sid: [...COMMON_PACKAGES, 'dnf5'],
};

/** What a command in one of the roots runs with: no developer locale, no inherited settings. */
export const ROOT_ENV: Readonly<Record<string, string>> = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/root',
};

export const cacheDir = path.join(
  process.env.XDG_CACHE_HOME || path.join(homedir(), '.cache'),
  'patchnanny',
  'debootstrap',
);

/**
 * The mirror debootstrap uses, read from this machine's apt configuration at run time, so the
 * repository names no registry host: the `URIs:` of the main deb822 entry (a suite without a
 * `-security`/`-updates` suffix), else the first matching `deb` line of sources.list.
 */
export function hostMirror(): string {
  const dir = '/etc/apt/sources.list.d';
  const sources = existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => f.endsWith('.sources'))
        .sort()
    : [];
  for (const file of sources) {
    const text = readFileSync(path.join(dir, file), 'utf8');
    for (const stanza of text.split(/\n\s*\n/)) {
      const fields = new Map<string, string>();
      for (const line of stanza.split('\n')) {
        const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
        if (m) fields.set(m[1].toLowerCase(), m[2].trim());
      }
      const types = (fields.get('types') ?? '').split(/\s+/);
      const suites = (fields.get('suites') ?? '').split(/\s+/);
      const uri = (fields.get('uris') ?? '').split(/\s+/)[0];
      if (fields.get('enabled') === 'no' || !types.includes('deb') || !uri) continue;
      if (suites.some((s) => s.length > 0 && !s.includes('-') && !s.includes('/'))) return uri;
    }
  }
  const list = '/etc/apt/sources.list';
  if (existsSync(list)) {
    for (const raw of readFileSync(list, 'utf8').split('\n')) {
      const words = raw
        .replace(/\[[^\]]*\]/, ' ')
        .trim()
        .split(/\s+/);
      if (words[0] === 'deb' && words[1] && words[2] && !words[2].includes('-')) return words[1];
    }
  }
  throw new Error('no Debian mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list');
}

const minbases = new Map<Generation, Promise<string>>();

/**
 * A minbase tree of the generation as a tarball, built once and cached outside the repository.
 * It is built under a temporary name and renamed into place, so a crash never leaves a half
 * cache. Hermetic: no downloaded archives, no indexes, no sources pointing at the mirror.
 */
export function minbaseTarball(suite: Generation): Promise<string> {
  let p = minbases.get(suite);
  if (!p) {
    p = (async () => {
      const tarball = path.join(cacheDir, `${suite}-minbase.tar`);
      if (existsSync(tarball)) return tarball;
      await mkdir(cacheDir, { recursive: true });
      const work = await mkdtemp(path.join(cacheDir, '.build-'));
      try {
        const root = path.join(work, 'root');
        await must('debootstrap', ['--variant=minbase', suite, root, hostMirror()]);
        await must('rm', [
          '-rf',
          '--one-file-system',
          path.join(root, 'var/cache/apt/archives'),
          path.join(root, 'var/lib/apt/lists'),
        ]);
        await mkdir(path.join(root, 'var/cache/apt/archives/partial'), { recursive: true });
        await mkdir(path.join(root, 'var/lib/apt/lists/partial'), { recursive: true });
        await rm(path.join(root, 'etc/apt/sources.list'), { force: true });
        const partial = path.join(work, 'base.tar');
        await must('tar', ['-C', root, '-cf', partial, '.']);
        await rename(partial, tarball);
        return tarball;
      } finally {
        await must('rm', ['-rf', '--one-file-system', work]);
      }
    })();
    minbases.set(suite, p);
  }
  return p;
}

const managerRoots = new Map<Generation, Promise<string>>();

/** Name of a managers root in the cache: a new package list is a new root. */
function managersRootName(suite: Generation): string {
  return `${suite}-managers-${MANAGER_PACKAGES[suite].join('+')}`;
}

/**
 * The generation's minbase with the package managers of MANAGER_PACKAGES installed from the
 * mirror, as a directory in the cache (the overlay's lower layer). Built once.
 */
export function managersRoot(suite: Generation): Promise<string> {
  let p = managerRoots.get(suite);
  if (!p) {
    p = (async () => {
      const dir = path.join(cacheDir, managersRootName(suite));
      if (existsSync(dir)) return dir;
      const base = await minbaseTarball(suite);
      const work = await mkdtemp(path.join(cacheDir, '.build-'));
      const root = path.join(work, 'root');
      const mounted: string[] = [];
      try {
        await mkdir(root);
        await must('tar', ['-C', root, '-xf', base]);
        await writeFile(path.join(root, 'etc/apt/sources.list'), `deb ${hostMirror()} ${suite} main\n`);
        // The mirror is a dated snapshot: sid's Release file is past its Valid-Until.
        await writeFile(
          path.join(root, 'etc/apt/apt.conf.d/99patchnanny-snapshot'),
          'Acquire::Check-Valid-Until "false";\n',
        );
        await copyFile('/etc/resolv.conf', path.join(root, 'etc/resolv.conf'));
        for (const [fs, target, opts] of [
          ['proc', 'proc', ['-t', 'proc', 'proc']],
          ['dev', 'dev', ['--bind', '/dev']],
        ] as const) {
          await must('mount', [...opts, path.join(root, target)]);
          mounted.push(path.join(root, fs));
        }
        const env = { ...ROOT_ENV, DEBIAN_FRONTEND: 'noninteractive' };
        await must('chroot', [root, 'apt-get', '-q', 'update'], { env });
        await must(
          'chroot',
          [root, 'apt-get', '-q', '-y', '--no-install-recommends', 'install', ...MANAGER_PACKAGES[suite]],
          { env },
        );
        for (const m of mounted.splice(0).reverse()) await must('umount', [m]);
        await must('rm', [
          '-rf',
          '--one-file-system',
          path.join(root, 'var/cache/apt/archives'),
          path.join(root, 'var/lib/apt/lists'),
          path.join(root, 'etc/apt/sources.list'),
          path.join(root, 'etc/resolv.conf'),
        ]);
        await mkdir(path.join(root, 'var/cache/apt/archives/partial'), { recursive: true });
        await mkdir(path.join(root, 'var/lib/apt/lists/partial'), { recursive: true });
        try {
          await rename(root, dir);
        } catch (err) {
          // Another process built the same root meanwhile: use theirs.
          if (!existsSync(dir)) throw err;
        }
        return dir;
      } finally {
        for (const m of mounted.reverse()) spawnSync('umount', ['-l', m]);
        await must('rm', ['-rf', '--one-file-system', work]);
      }
    })();
    managerRoots.set(suite, p);
  }
  return p;
}

/** Mount points at or below dir, shallowest first (from /proc/self/mountinfo). */
export function mountsUnder(dir: string): string[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((m): m is string => !!m)
    .map((m) => m.replace(/\\040/g, ' '))
    .filter((m) => m === dir || m.startsWith(prefix))
    .sort((a, b) => a.length - b.length);
}

/** Unmount everything at or below dir (lazily if busy) and delete it; never descends into a mount. */
export async function unmountAndRemove(dir: string): Promise<void> {
  for (const mount of mountsUnder(dir).reverse()) {
    const r = await exec('umount', [mount]);
    if (r.code !== 0) await exec('umount', ['-l', mount]);
  }
  const left = mountsUnder(dir);
  if (left.length > 0) throw new Error(`${dir} still has mounts, not deleting it: ${left.join(', ')}`);
  await must('rm', ['-rf', '--one-file-system', dir]);
}

const liveMounts = new Set<string>();
// Last resort if the process dies with a root mounted: never leave host mounts behind.
process.once('exit', () => {
  for (const dir of liveMounts) {
    for (const mount of mountsUnder(dir).reverse()) spawnSync('umount', ['-l', mount]);
  }
});

/** Track a directory whose mounts must go when the process exits, whatever happens. */
export function trackMounts(dir: string): () => void {
  liveMounts.add(dir);
  return () => liveMounts.delete(dir);
}

/**
 * Where a family's managers run: this machine, or a root of another generation. Paths given to
 * `exec` and returned by `mkdtemp` are as the managers see them; `outside` turns one into the
 * path this process reads and writes.
 */
export interface ManagerHost {
  readonly generation: string;
  /** The directory holding the served patch scripts, as the managers see it. */
  readonly scripts: string;
  outside(inside: string): string;
  exec(
    cmd: string,
    args: string[],
    env?: Record<string, string>,
  ): Promise<{ code: number; stdout: string; stderr: string }>;
  /** A fresh directory under the host's temporary directory (inside path). */
  mkdtemp(prefix: string): Promise<string>;
  /** Make a directory of this process visible to the managers (copied once); its inside path. */
  import(dir: string): Promise<string>;
  /** The directories of PATH the managers see. */
  readonly path: string[];
}

/** host.exec, throwing with the captured output when the command fails. */
export async function hostMust(
  host: ManagerHost,
  cmd: string,
  args: string[],
  env?: Record<string, string>,
): Promise<string> {
  const r = await host.exec(cmd, args, env);
  if (r.code !== 0)
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.code} on ${host.generation}\n${r.stderr}\n${r.stdout}`);
  return r.stdout;
}

/** The served scripts in this checkout (dist/test/scripts -> the repository root). */
const SCRIPTS_DIR = path.resolve(__dirname, '../../../scripts/patch');

/** This machine. */
export const thisMachine: ManagerHost = {
  generation: HOST_GENERATION,
  scripts: SCRIPTS_DIR,
  outside: (p) => p,
  exec: (cmd, args, env) => exec(cmd, args, { env: env ? { ...process.env, ...env } : process.env }),
  mkdtemp: (prefix) => mkdtemp(path.join(tmpdir(), prefix)),
  import: (dir) => Promise.resolve(dir),
  path: (process.env.PATH ?? '').split(path.delimiter).filter(Boolean),
};

/** chroot(8) on this machine. */
const CHROOT =
  (process.env.PATH ?? '')
    .split(path.delimiter)
    .map((d) => path.join(d, 'chroot'))
    .find((p) => p.startsWith('/') && existsSync(p)) ?? '/usr/sbin/chroot';

class GenerationRoot implements ManagerHost {
  readonly scripts = '/opt/patchnanny';
  readonly path = ROOT_ENV.PATH.split(':');
  private imported = new Map<string, Promise<string>>();
  private counter = 0;

  constructor(
    readonly generation: Generation,
    /** The merged overlay: this root's `/` as this process sees it. */
    readonly root: string,
  ) {}

  outside(inside: string): string {
    if (!inside.startsWith('/')) throw new Error(`not an absolute path: ${inside}`);
    return path.join(this.root, inside);
  }

  exec(cmd: string, args: string[], env: Record<string, string> = {}) {
    // chroot by its path on this machine: env.PATH is the PATH inside the root.
    return exec(CHROOT, [this.root, cmd, ...args], { env: { ...ROOT_ENV, ...env } });
  }

  async mkdtemp(prefix: string): Promise<string> {
    const made = await mkdtemp(path.join(this.root, 'tmp', prefix));
    return `/tmp/${path.basename(made)}`;
  }

  import(dir: string): Promise<string> {
    let p = this.imported.get(dir);
    if (!p) {
      p = (async () => {
        const inside = `/opt/pn-imported/${++this.counter}-${path.basename(dir)}`;
        await mkdir(this.outside(inside), { recursive: true });
        for (const f of await readdir(dir, { withFileTypes: true }))
          if (f.isFile()) await copyFile(path.join(dir, f.name), path.join(this.outside(inside), f.name));
        return inside;
      })();
      this.imported.set(dir, p);
    }
    return p;
  }
}

const roots = new Map<Generation, Promise<ManagerHost>>();

/**
 * The host the managers of this generation run on: this machine when it is that generation,
 * else the cached managers root mounted as an overlay on a tmpfs (with /proc and /dev), the
 * served scripts copied to /opt/patchnanny. One per process, unmounted when it exits.
 */
export function generationHost(generation: Generation): Promise<ManagerHost> {
  if (generation === HOST_GENERATION) return Promise.resolve(thisMachine);
  let p = roots.get(generation);
  if (!p) {
    p = (async () => {
      const lower = await managersRoot(generation);
      const dir = await mkdtemp(path.join(tmpdir(), `pn-root-${generation}-`));
      trackMounts(dir);
      process.once('exit', () => spawnSync('rm', ['-rf', '--one-file-system', dir]));
      await must('mount', ['-t', 'tmpfs', '-o', 'size=4g,mode=0755', `pn-root-${generation}`, dir]);
      for (const d of ['upper', 'work', 'root']) await mkdir(path.join(dir, d));
      const root = path.join(dir, 'root');
      await must('mount', [
        '-t',
        'overlay',
        `pn-root-${generation}`,
        '-o',
        `lowerdir=${lower},upperdir=${path.join(dir, 'upper')},workdir=${path.join(dir, 'work')}`,
        root,
      ]);
      await must('mount', ['-t', 'proc', 'proc', path.join(root, 'proc')]);
      await must('mount', ['--bind', '/dev', path.join(root, 'dev')]);
      const host = new GenerationRoot(generation, root);
      await mkdir(host.outside(host.scripts), { recursive: true });
      for (const f of await readdir(SCRIPTS_DIR)) {
        if (f.endsWith('.sh')) await copyFile(path.join(SCRIPTS_DIR, f), path.join(host.outside(host.scripts), f));
      }
      return host;
    })();
    roots.set(generation, p);
  }
  return p;
}
