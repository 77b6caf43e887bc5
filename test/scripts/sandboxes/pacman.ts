import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generationHost, hostMust, thisMachine, type Generation, type ManagerHost } from '../generations';
import { must, parseRun, treeFingerprint, type Sandbox, type ScriptRun } from '../sandbox';

const SCRIPT = 'pacman-update.sh';
const REPO = 'pntest'; // `local` is reserved by pacman for the installed-package database
const ARCH = 'x86_64';
const VERSIONS = { 1: '1.0-1', 2: '2.0-1' } as const;

/**
 * The running kernel. Version 1 of the kernel fixture installs exactly this kernel's modules
 * directory (the sandbox root "runs" the host kernel, as a container does); version 2 installs
 * a newer kernel, so after the upgrade the running kernel's modules are gone, which is what the
 * script checks on a real Arch system.
 */
const RUNNING_KERNEL = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim();

interface FixtureFile {
  path: string;
  content: string;
}

interface Fixture {
  name: string;
  version: string;
  files: FixtureFile[];
}

function versionFile(name: string, version: string, owner = name): FixtureFile {
  return { path: `usr/share/${owner}/version`, content: `${name} ${version}\n` };
}

function kernel(version: string, kver: string): Fixture {
  return {
    name: 'linux-pn',
    version,
    files: [
      { path: `usr/lib/modules/${kver}/vmlinuz`, content: `linux-pn ${version}\n` },
      { path: `usr/lib/modules/${kver}/pkgbase`, content: 'linux-pn\n' },
    ],
  };
}

const FIXTURES: Fixture[] = [
  ...(['pn-alpha', 'pn-beta', 'pn-stable'] as const).map((name) => ({
    name,
    version: VERSIONS[1],
    files: [versionFile(name, VERSIONS[1])],
  })),
  ...(['pn-alpha', 'pn-beta'] as const).map((name) => ({
    name,
    version: VERSIONS[2],
    files: [versionFile(name, VERSIONS[2])],
  })),
  kernel(VERSIONS[1], RUNNING_KERNEL),
  kernel(VERSIONS[2], `${RUNNING_KERNEL}-pn2`),
  // Ships a file owned by pn-stable: pacman's file-conflict check must fail the transaction.
  { name: 'pn-alpha', version: '3.0-1', files: [versionFile('pn-alpha', '3.0-1', 'pn-stable')] },
];

const fileName = (name: string, version: string) => `${name}-${version}-${ARCH}.pkg.tar.zst`;

/** Build a .pkg.tar.zst by hand: a .PKGINFO plus the payload, archived with bsdtar. */
async function buildPackage(out: string, fixture: Fixture): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'pn-pkg-'));
  try {
    const size = fixture.files.reduce((sum, f) => sum + f.content.length, 0);
    const pkginfo = [
      `pkgname = ${fixture.name}`,
      `pkgbase = ${fixture.name}`,
      `pkgver = ${fixture.version}`,
      'pkgdesc = patchnanny test fixture',
      'url = https://example.invalid/',
      'builddate = 1700000000',
      'packager = patchnanny tests',
      `size = ${size}`,
      `arch = ${ARCH}`,
      'license = Apache-2.0',
    ];
    await writeFile(join(work, '.PKGINFO'), `${pkginfo.join('\n')}\n`);
    for (const f of fixture.files) {
      await mkdir(join(work, f.path, '..'), { recursive: true });
      await writeFile(join(work, f.path), f.content);
    }
    await must('bsdtar', ['--zstd', '-cf', join(out, fileName(fixture.name, fixture.version)), '.PKGINFO', 'usr'], {
      cwd: work,
    });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

let fixtureDir: Promise<string> | undefined;

/** Fixture packages are built once per process. */
function fixtures(): Promise<string> {
  fixtureDir ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pn-pacman-fixtures-'));
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    for (const f of FIXTURES) await buildPackage(dir, f);
    return dir;
  })();
  return fixtureDir;
}

export class PacmanSandbox implements Sandbox {
  readonly family = 'pacman' as const;
  readonly rebootPackage = 'linux-pn';
  readonly securityData = 'none' as const;
  private base = '';
  /** Where pacman runs: this machine until create() has found the generation's host. */
  private host: ManagerHost = thisMachine;

  constructor(readonly generation: Generation = 'bookworm') {}

  /** The system's root directory (what the script gets as --root), as the managers see it. */
  get root(): string {
    return join(this.base, 'root');
  }

  private get repo(): string {
    return join(this.base, 'repo');
  }

  private get conf(): string {
    return join(this.root, 'etc/pacman.conf');
  }

  private out(p: string): string {
    return this.host.outside(p);
  }

  /** pacman confined to the sandbox root, the same way the script confines it. */
  private pacman(args: string[]) {
    const r = this.root;
    return this.host.exec('pacman', [
      '--noconfirm',
      '--root',
      `${r}/`,
      '--dbpath',
      `${r}/var/lib/pacman/`,
      '--cachedir',
      `${r}/var/cache/pacman/pkg/`,
      '--config',
      this.conf,
      // pacman 7 refuses a --gpgdir that does not exist; 6 did not care.
      ...(existsSync(this.out(`${r}/etc/pacman.d/gnupg`)) ? ['--gpgdir', `${r}/etc/pacman.d/gnupg/`] : []),
      '--hookdir',
      `${r}/etc/pacman.d/hooks/`,
      '--logfile',
      `${r}/var/log/pacman.log`,
      ...args,
    ]);
  }

  async create(): Promise<void> {
    this.host = await generationHost(this.generation);
    const pkgs = await this.host.import(await fixtures());
    this.base = await this.host.mkdtemp('pn-pacman-');
    // No etc/pacman.d/gnupg: a system whose keyring was never initialised (SigLevel = Never), so
    // the script's way around pacman 7 refusing a --gpgdir that does not exist is exercised.
    for (const dir of ['var/lib/pacman', 'var/cache/pacman/pkg', 'var/log', 'etc/pacman.d/hooks']) {
      await mkdir(this.out(join(this.root, dir)), { recursive: true });
    }
    await mkdir(this.out(this.repo));
    await writeFile(
      this.out(this.conf),
      [
        '[options]',
        'Architecture = auto',
        'SigLevel = Never',
        'LocalFileSigLevel = Never',
        '',
        `[${REPO}]`,
        `Server = file://${this.repo}`,
        '',
      ].join('\n'),
    );
    const v1 = FIXTURES.filter((f) => f.version === VERSIONS[1]).map((f) => join(pkgs, fileName(f.name, f.version)));
    const installed = await this.pacman(['-U', ...v1]);
    if (installed.code !== 0)
      throw new Error(`pacman -U failed (${installed.code}):\n${installed.stderr}\n${installed.stdout}`);
    await this.publish(FIXTURES.filter((f) => f.version === VERSIONS[2]));
  }

  private async publish(packages: Fixture[]): Promise<void> {
    const pkgs = await this.host.import(await fixtures());
    const files: string[] = [];
    for (const f of packages) {
      const file = join(this.repo, fileName(f.name, f.version));
      await copyFile(this.out(join(pkgs, fileName(f.name, f.version))), this.out(file));
      files.push(file);
    }
    await hostMust(this.host, 'repo-add', ['--quiet', join(this.repo, `${REPO}.db.tar.gz`), ...files]);
  }

  /** bash's argv for the shipped script with these arguments, confined to this system (this machine's paths). */
  scriptArgv(args: string[]): string[] {
    return [join(this.host.scripts, SCRIPT), ...args, '--root', this.root];
  }

  async run(args: string[]): Promise<ScriptRun> {
    return parseRun(await this.host.exec('bash', this.scriptArgv(args)));
  }

  async installedVersion(name: string): Promise<string | null> {
    const r = await this.pacman(['-Q', name]);
    if (r.code !== 0) return null;
    const [found, version] = r.stdout.trim().split(/\s+/);
    return found === name && version ? version : null;
  }

  async addHold(name: string): Promise<void> {
    const conf = await readFile(this.out(this.conf), 'utf8');
    await writeFile(this.out(this.conf), conf.replace(/^\[options\]$/m, `[options]\nIgnorePkg = ${name}`));
  }

  async hasHold(name: string): Promise<boolean> {
    const conf = await readFile(this.out(this.conf), 'utf8');
    return [...conf.matchAll(/^\s*IgnorePkg\s*=(.*)$/gm)].some((m) => m[1].trim().split(/\s+/).includes(name));
  }

  async publishBroken(): Promise<void> {
    await this.publish(FIXTURES.filter((f) => f.name === 'pn-alpha' && f.version === '3.0-1'));
  }

  async managerVersion(): Promise<string> {
    const r = await this.host.exec('pacman', ['--version']);
    return `pacman ${/Pacman v(\S+)/.exec(r.stdout)?.[1] ?? '?'}`;
  }

  version(n: 1 | 2): string {
    return VERSIONS[n];
  }

  fingerprint(): Promise<string> {
    return treeFingerprint(this.out(this.base));
  }

  async dispose(): Promise<void> {
    if (this.base) await rm(this.out(this.base), { recursive: true, force: true });
    this.base = '';
  }
}
