import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generationHost, hostMust, thisMachine, type Generation, type ManagerHost } from '../generations';
import { parseRun, treeFingerprint, type Sandbox, type ScriptRun } from '../sandbox';
import { buildRpmFixtures, rpmFileName, updateinfoXml, type RpmFixture } from './rpm-fixtures';

const SCRIPT = 'zypper-update.sh';
const REPO = 'pntest';
/** Where SLE 15 / Leap 15 keep the rpm database (/var/lib/rpm is a symlink to it). */
const RPM_DBPATH = '/usr/lib/sysimage/rpm';
const VERSIONS = { 1: '1.0-1', 2: '2.0-1' } as const;

// A kernel-like package: it provides installhint(reboot-needed), as SUSE kernels do, so libzypp
// itself raises the reboot flag that `zypper needs-rebooting` reads.
const REBOOT_PACKAGE = 'pn-kernel';

const FIXTURES: RpmFixture[] = [
  ...['pn-alpha', 'pn-beta', 'pn-stable'].map((name) => ({ name, version: '1.0' })),
  ...['pn-alpha', 'pn-beta'].map((name) => ({ name, version: '2.0' })),
  ...['1.0', '2.0'].map((version) => ({ name: REBOOT_PACKAGE, version, provides: 'installhint(reboot-needed)' })),
  // Ships a file owned by pn-stable: libzypp's file-conflict check must fail the transaction.
  { name: 'pn-alpha', version: '3.0', owner: 'pn-stable' },
];

const rpmFile = rpmFileName;

let fixtureDir: Promise<string> | undefined;

/** Fixture rpms are built once per process. */
function fixtures(): Promise<string> {
  fixtureDir ??= buildRpmFixtures('pn-zypper-fixtures', FIXTURES);
  return fixtureDir;
}

export class ZypperSandbox implements Sandbox {
  readonly family = 'zypper' as const;
  readonly rebootPackage = REBOOT_PACKAGE;
  readonly securityData = 'patches' as const;
  private base = '';
  /** Where zypper runs: this machine until create() has found the generation's host. */
  private host: ManagerHost = thisMachine;

  constructor(readonly generation: Generation = 'bookworm') {}

  /** The system's root directory (what the script gets as --root), as the managers see it. */
  get root(): string {
    return join(this.base, 'root');
  }

  private get repo(): string {
    return join(this.base, 'repo');
  }

  private out(p: string): string {
    return this.host.outside(p);
  }

  /** zypper confined to the sandbox root (lock file and log included), as the script runs it. */
  private zypper(args: string[]) {
    return this.host.exec('zypper', ['--non-interactive', '--root', this.root, ...args], {
      ZYPP_LOCKFILE_ROOT: this.root,
      ZYPP_LOGFILE: join(this.root, 'var/log/zypper.log'),
    });
  }

  private rpm(args: string[]) {
    return this.host.exec('rpm', ['--root', this.root, '--dbpath', RPM_DBPATH, ...args]);
  }

  async create(): Promise<void> {
    this.host = await generationHost(this.generation);
    const rpms = await this.host.import(await fixtures());
    this.base = await this.host.mkdtemp('pn-zypper-');
    for (const dir of ['etc/zypp/repos.d', 'var/log', 'var/tmp', 'run'])
      await mkdir(this.out(join(this.root, dir)), { recursive: true });
    await mkdir(this.out(this.repo));
    const init = await this.rpm(['--initdb']);
    if (init.code !== 0) throw new Error(`rpm --initdb failed: ${init.stderr}`);
    const v1 = FIXTURES.filter((f) => f.version === '1.0').map((f) => join(rpms, rpmFile(f)));
    const installed = await this.rpm(['-i', ...v1]);
    if (installed.code !== 0) throw new Error(`rpm -i failed (${installed.code}):\n${installed.stderr}`);
    await writeFile(
      this.out(join(this.root, `etc/zypp/repos.d/${REPO}.repo`)),
      [
        `[${REPO}]`,
        `name=${REPO}`,
        'enabled=1',
        'autorefresh=1',
        `baseurl=file://${this.repo}`,
        'type=rpm-md',
        'gpgcheck=0',
        '',
      ].join('\n'),
    );
    await this.publish(FIXTURES.filter((f) => f.version === '2.0'));
  }

  private async publish(packages: RpmFixture[]): Promise<void> {
    const rpms = await this.host.import(await fixtures());
    for (const f of packages) await copyFile(this.out(join(rpms, rpmFile(f))), this.out(join(this.repo, rpmFile(f))));
    await hostMust(this.host, 'createrepo_c', ['--quiet', this.repo]);
    // The fixtures' advisories as SUSE publishes them: updateinfo, read by zypper as patches.
    await writeFile(this.out(join(this.base, 'updateinfo.xml')), updateinfoXml());
    await hostMust(this.host, 'modifyrepo_c', [join(this.base, 'updateinfo.xml'), join(this.repo, 'repodata')]);
  }

  /** bash's argv for the shipped script with these arguments, confined to this system (this machine's paths). */
  scriptArgv(args: string[]): string[] {
    return [join(this.host.scripts, SCRIPT), ...args, '--root', this.root];
  }

  async run(args: string[]): Promise<ScriptRun> {
    return parseRun(await this.host.exec('bash', this.scriptArgv(args)));
  }

  async installedVersion(name: string): Promise<string | null> {
    const r = await this.rpm(['-q', '--qf', '%{VERSION}-%{RELEASE}', name]);
    return r.code === 0 ? r.stdout.trim() : null;
  }

  async addHold(name: string): Promise<void> {
    const r = await this.zypper(['addlock', name]);
    if (r.code !== 0) throw new Error(`zypper addlock ${name} failed (${r.code}): ${r.stderr}`);
  }

  async hasHold(name: string): Promise<boolean> {
    const r = await this.zypper(['--xmlout', 'locks']);
    if (r.code !== 0) throw new Error(`zypper locks failed (${r.code}): ${r.stderr}`);
    return [...r.stdout.matchAll(/<name>([^<]*)<\/name>/g)].some((m) => m[1] === name);
  }

  async publishBroken(): Promise<void> {
    await this.publish(FIXTURES.filter((f) => f.name === 'pn-alpha' && f.version === '3.0'));
  }

  async managerVersion(): Promise<string> {
    const r = await this.host.exec('zypper', ['--version']);
    return /zypper \S+/.exec(r.stdout)?.[0] ?? 'zypper ?';
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
