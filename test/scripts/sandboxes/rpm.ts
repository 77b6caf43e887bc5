import { existsSync, rmSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, readFile, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { scriptNameFor } from '../../../contract';
import { exec, must, parseRun, treeFingerprint, type Sandbox, type ScriptRun } from '../sandbox';
import { buildRpmFixtures, rpmFileName, type RpmFixture } from './rpm-fixtures';

const SCRIPTS = resolve(__dirname, '../../../../scripts/patch');
const VERSIONS = { 1: '1.0-1', 2: '2.0-1' } as const;
const EVR_FORMAT = '%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\\n';
/** Named like a kernel flavour, so the scripts' core-package reboot rule (kernel-*) applies. */
const REBOOT_PACKAGE = 'kernel-pn';
/** When the v1 fixtures count as installed (2023-11-14), long before this machine's last boot. */
const PROVISIONED_AT = 1_700_000_000;

const fixture = (name: string, version: string, owner?: string): RpmFixture => ({ name, version, owner });

const FIXTURES: RpmFixture[] = [
  ...['pn-alpha', 'pn-beta', 'pn-stable', REBOOT_PACKAGE].map((name) => fixture(name, '1.0')),
  ...['pn-alpha', 'pn-beta', REBOOT_PACKAGE].map((name) => fixture(name, '2.0')),
  // Ships a file owned by pn-stable with other content: rpm's file-conflict check fails the transaction.
  fixture('pn-alpha', '3.0', 'pn-stable'),
];

const rpmFile = rpmFileName;

let fixtureDir: Promise<string> | undefined;

/** Fixture rpms are built once per process. */
function fixtures(): Promise<string> {
  fixtureDir ??= buildRpmFixtures('pn-rpm-fixtures', FIXTURES);
  return fixtureDir;
}

/** The directory of the first `cmd` on PATH, or undefined. */
function onPath(cmd: string): string | undefined {
  return (process.env.PATH ?? '').split(delimiter).find((dir) => dir && existsSync(join(dir, cmd)));
}

let yumBin: Promise<string> | undefined;

/**
 * A PATH directory where `yum` is this machine's dnf 4 and there is no `dnf`: every other command
 * on PATH is linked into it. dnf-update.sh run with only this on PATH must find and drive `yum`,
 * as on an EL 8+ host whose entry point is yum (there a link to dnf-3 as well). Debian's dnf
 * package ships no `yum`. Built once per process, removed when it exits.
 */
function yumOnlyBin(): Promise<string> {
  yumBin ??= (async () => {
    const dnfDir = onPath('dnf');
    if (!dnfDir) throw new Error('dnf is not installed');
    const bin = await mkdtemp(join(tmpdir(), 'pn-yum-bin-'));
    process.on('exit', () => rmSync(bin, { recursive: true, force: true }));
    const linked = new Set(['dnf', 'yum']);
    for (const dir of (process.env.PATH ?? '').split(delimiter).filter(Boolean)) {
      const names = await readdir(dir).catch(() => [] as string[]);
      for (const name of names.filter((n) => !linked.has(n))) {
        linked.add(name); // the first on PATH wins, as in a shell
        await symlink(join(dir, name), join(bin, name));
      }
    }
    await symlink(await realpath(join(dnfDir, 'dnf')), join(bin, 'yum'));
    return bin;
  })();
  return yumBin;
}

/**
 * An rpm system under a temporary root: v1 fixtures installed with rpm, a `pn-base` repository
 * holding v1 and a `pn-updates` repository holding v2 (as baseos + updates do), both file://,
 * configured in ROOT/etc/yum.repos.d. Shared by the dnf and yum families: both are served
 * dnf-update.sh (contract scriptNameFor); the yum sandbox runs it with `yum` as the only manager.
 */
class RpmSandbox implements Sandbox {
  readonly rebootPackage = REBOOT_PACKAGE;
  private base = '';

  constructor(readonly family: 'dnf' | 'yum') {}

  private get root(): string {
    return join(this.base, 'root');
  }

  private get updates(): string {
    return join(this.base, 'repos', 'updates');
  }

  private get conf(): string {
    return join(this.root, 'etc/dnf/dnf.conf');
  }

  async create(): Promise<void> {
    const rpms = await fixtures();
    this.base = await mkdtemp(join(tmpdir(), `pn-${this.family}-`));
    await mkdir(join(this.root, 'etc/yum.repos.d'), { recursive: true });
    await mkdir(join(this.root, 'etc/dnf'), { recursive: true });
    await writeFile(this.conf, '[main]\ngpgcheck=1\ninstallonly_limit=3\nbest=True\nskip_if_unavailable=False\n');
    const v1 = FIXTURES.filter((f) => f.version === '1.0');
    const v2 = FIXTURES.filter((f) => f.version === '2.0');
    // The host was rebooted after provisioning: rpm takes INSTALLTIME from SOURCE_DATE_EPOCH, so
    // v1 is older than the boot and the scripts' rule (a core package installed after the last
    // boot needs a reboot) fires only for what a run installs.
    await must('rpm', ['--root', this.root, '-i', ...v1.map((f) => join(rpms, rpmFile(f)))], {
      env: { ...process.env, SOURCE_DATE_EPOCH: String(PROVISIONED_AT) },
    });
    const repos: [string, RpmFixture[]][] = [
      ['base', v1],
      ['updates', v2],
    ];
    for (const [id, packages] of repos) {
      const dir = join(this.base, 'repos', id);
      await mkdir(dir, { recursive: true });
      for (const f of packages) await copyFile(join(rpms, rpmFile(f)), join(dir, rpmFile(f)));
      await must('createrepo_c', ['--quiet', dir]);
      await writeFile(
        join(this.root, 'etc/yum.repos.d', `pn-${id}.repo`),
        `[pn-${id}]\nname=patchnanny ${id}\nbaseurl=file://${dir}\ngpgcheck=0\nenabled=1\n`,
      );
    }
  }

  async run(args: string[]): Promise<ScriptRun> {
    const env = this.family === 'yum' ? { ...process.env, PATH: await yumOnlyBin() } : process.env;
    const r = parseRun(
      await exec('bash', [join(SCRIPTS, scriptNameFor(this.family)), ...args, '--root', this.root], { env }),
    );
    // The script names the manager it drove: proof that the yum run went through `yum`.
    if (r.json.error?.code !== 'usage' && r.json.manager !== this.family)
      throw new Error(`expected the script to drive ${this.family}, it drove ${r.json.manager}\n${r.stderr}`);
    return r;
  }

  async installedVersion(name: string): Promise<string | null> {
    const r = await exec('rpm', ['--root', this.root, '-q', '--qf', EVR_FORMAT, name]);
    if (r.code !== 0) return null;
    return r.stdout.trim().split('\n').pop() || null;
  }

  /** An admin's hold: excludepkgs= in the root's dnf.conf. */
  async addHold(name: string): Promise<void> {
    const conf = await readFile(this.conf, 'utf8');
    const held = /^excludepkgs=(.*)$/m.test(conf)
      ? conf.replace(/^excludepkgs=(.*)$/m, (_, list: string) => `excludepkgs=${list},${name}`)
      : conf.replace(/^\[main\]$/m, `[main]\nexcludepkgs=${name}`);
    await writeFile(this.conf, held);
  }

  async hasHold(name: string): Promise<boolean> {
    const conf = await readFile(this.conf, 'utf8');
    return [...conf.matchAll(/^\s*(?:excludepkgs|exclude)\s*=(.*)$/gm)].some((m) =>
      m[1].split(/[\s,]+/).includes(name),
    );
  }

  async publishBroken(): Promise<void> {
    const rpms = await fixtures();
    const broken = FIXTURES.find((f) => f.version === '3.0')!;
    await copyFile(join(rpms, rpmFile(broken)), join(this.updates, rpmFile(broken)));
    await must('createrepo_c', ['--quiet', '--update', this.updates]);
  }

  version(n: 1 | 2): string {
    return VERSIONS[n];
  }

  fingerprint(): Promise<string> {
    return treeFingerprint(this.base);
  }

  async dispose(): Promise<void> {
    if (this.base) await rm(this.base, { recursive: true, force: true });
    this.base = '';
  }
}

export class DnfSandbox extends RpmSandbox {
  constructor() {
    super('dnf');
  }
}

export class YumSandbox extends RpmSandbox {
  constructor() {
    super('yum');
  }
}
