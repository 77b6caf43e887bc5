import { existsSync, rmSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { scriptNameFor } from '../../../contract';
import { generationHost, hostMust, type Generation, type ManagerHost } from '../generations';
import { parseRun, treeFingerprint, type Sandbox, type ScriptRun } from '../sandbox';
import { buildRpmFixtures, rpmFileName, updateinfoXml, type RpmFixture } from './rpm-fixtures';

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

/** The commands that name an rpm-family manager: an alias bin has none of them but its own. */
const MANAGER_COMMANDS = new Set(['dnf', 'dnf-3', 'dnf4', 'dnf5', 'yum']);

const aliasBins = new Map<string, Promise<string>>();

/**
 * A PATH directory (as the host's commands see it) where the rpm-family managers are exactly
 * `aliases` (command name -> the real command it is linked to) and every other command on the
 * host's PATH is linked in. For yum: `yum` is the host's dnf 4 and there is no `dnf`, as on an
 * EL 8+ host whose entry point is yum (there a link to dnf-3 as well); Debian's dnf package
 * ships no `yum`. For dnf5: `dnf` is dnf5, as on Fedora 41+ (in Debian sid `dnf` is dnf 4 and
 * dnf5 a separate binary). Built once per process and host.
 */
function aliasBin(host: ManagerHost, aliases: Record<string, string>): Promise<string> {
  const key = `${host.generation}:${JSON.stringify(aliases)}`;
  let p = aliasBins.get(key);
  if (!p) {
    p = (async () => {
      const bin = await host.mkdtemp('pn-alias-bin-');
      process.on('exit', () => rmSync(host.outside(bin), { recursive: true, force: true }));
      const linked = new Set([...MANAGER_COMMANDS, ...Object.keys(aliases)]);
      for (const dir of host.path) {
        const names = await readdir(host.outside(dir)).catch(() => [] as string[]);
        for (const name of names.filter((n) => !linked.has(n))) {
          linked.add(name); // the first on PATH wins, as in a shell
          await symlink(join(dir, name), join(host.outside(bin), name));
        }
      }
      for (const [name, target] of Object.entries(aliases)) {
        const real = (await hostMust(host, 'readlink', ['-f', `/usr/bin/${target}`])).trim();
        if (!existsSync(host.outside(real))) throw new Error(`${target} is not installed on ${host.generation}`);
        await symlink(real, join(host.outside(bin), name));
      }
      return bin;
    })();
    aliasBins.set(key, p);
  }
  return p;
}

/** The rpm-family managers a proof can drive: dnf 4, dnf 4 called as yum, dnf5 called as dnf. */
export type RpmManager = 'dnf' | 'yum' | 'dnf5';

/**
 * An rpm system under a temporary root: v1 fixtures installed with rpm, a `pn-base` repository
 * holding v1 and a `pn-updates` repository holding v2 (as baseos + updates do), both file://,
 * configured in ROOT/etc/yum.repos.d. Shared by the dnf and yum families: both are served
 * dnf-update.sh (contract scriptNameFor); the yum sandbox runs it with `yum` as the only manager,
 * the dnf5 one with `dnf` being dnf5. The managers are those of `generation` (this machine's, or
 * a root of that generation: generations.ts).
 */
class RpmSandbox implements Sandbox {
  readonly rebootPackage = REBOOT_PACKAGE;
  readonly securityData = 'advisories' as const;
  private base = '';
  private hostPromise: Promise<ManagerHost> | undefined;

  constructor(
    readonly family: 'dnf' | 'yum',
    readonly generation: Generation = 'bookworm',
    readonly manager: RpmManager = family,
  ) {}

  private host(): Promise<ManagerHost> {
    this.hostPromise ??= generationHost(this.generation);
    return this.hostPromise;
  }

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
    const host = await this.host();
    const rpms = await host.import(await fixtures());
    this.base = await host.mkdtemp(`pn-${this.manager}-`);
    const out = (p: string) => host.outside(p);
    await mkdir(out(join(this.root, 'etc/yum.repos.d')), { recursive: true });
    await mkdir(out(join(this.root, 'etc/dnf')), { recursive: true });
    await writeFile(out(this.conf), '[main]\ngpgcheck=1\ninstallonly_limit=3\nbest=True\nskip_if_unavailable=False\n');
    const v1 = FIXTURES.filter((f) => f.version === '1.0');
    const v2 = FIXTURES.filter((f) => f.version === '2.0');
    // The host was rebooted after provisioning: rpm takes INSTALLTIME from SOURCE_DATE_EPOCH, so
    // v1 is older than the boot and the scripts' rule (a core package installed after the last
    // boot needs a reboot) fires only for what a run installs.
    await hostMust(host, 'rpm', ['--root', this.root, '-i', ...v1.map((f) => join(rpms, rpmFile(f)))], {
      SOURCE_DATE_EPOCH: String(PROVISIONED_AT),
    });
    const repos: [string, RpmFixture[]][] = [
      ['base', v1],
      ['updates', v2],
    ];
    for (const [id, packages] of repos) {
      const dir = join(this.base, 'repos', id);
      await mkdir(out(dir), { recursive: true });
      for (const f of packages) await copyFile(out(join(rpms, rpmFile(f))), out(join(dir, rpmFile(f))));
      await hostMust(host, 'createrepo_c', ['--quiet', dir]);
      if (id === 'updates') {
        await writeFile(out(join(this.base, 'updateinfo.xml')), updateinfoXml());
        await hostMust(host, 'modifyrepo_c', [join(this.base, 'updateinfo.xml'), join(dir, 'repodata')]);
      }
      await writeFile(
        out(join(this.root, 'etc/yum.repos.d', `pn-${id}.repo`)),
        `[pn-${id}]\nname=patchnanny ${id}\nbaseurl=file://${dir}\ngpgcheck=0\nenabled=1\n`,
      );
    }
  }

  async run(args: string[]): Promise<ScriptRun> {
    const host = await this.host();
    const aliases: Record<RpmManager, Record<string, string> | undefined> = {
      dnf: undefined,
      yum: { yum: 'dnf' },
      dnf5: { dnf: 'dnf5' },
    };
    const alias = aliases[this.manager];
    const env = alias ? { PATH: await aliasBin(host, alias) } : undefined;
    const r = parseRun(
      await host.exec('bash', [join(host.scripts, scriptNameFor(this.family)), ...args, '--root', this.root], env),
    );
    // The script names the manager it drove: proof that the yum run went through `yum`.
    if (r.json.error?.code !== 'usage' && r.json.manager !== this.manager)
      throw new Error(`expected the script to drive ${this.manager}, it drove ${r.json.manager}\n${r.stderr}`);
    return r;
  }

  async installedVersion(name: string): Promise<string | null> {
    const r = await (await this.host()).exec('rpm', ['--root', this.root, '-q', '--qf', EVR_FORMAT, name]);
    if (r.code !== 0) return null;
    return r.stdout.trim().split('\n').pop() || null;
  }

  /** An admin's hold: excludepkgs= in the root's dnf.conf. */
  async addHold(name: string): Promise<void> {
    const file = (await this.host()).outside(this.conf);
    const conf = await readFile(file, 'utf8');
    const held = /^excludepkgs=(.*)$/m.test(conf)
      ? conf.replace(/^excludepkgs=(.*)$/m, (_, list: string) => `excludepkgs=${list},${name}`)
      : conf.replace(/^\[main\]$/m, `[main]\nexcludepkgs=${name}`);
    await writeFile(file, held);
  }

  async hasHold(name: string): Promise<boolean> {
    const conf = await readFile((await this.host()).outside(this.conf), 'utf8');
    return [...conf.matchAll(/^\s*(?:excludepkgs|exclude)\s*=(.*)$/gm)].some((m) =>
      m[1].split(/[\s,]+/).includes(name),
    );
  }

  async publishBroken(): Promise<void> {
    const host = await this.host();
    const rpms = await host.import(await fixtures());
    const broken = FIXTURES.find((f) => f.version === '3.0')!;
    await copyFile(host.outside(join(rpms, rpmFile(broken))), host.outside(join(this.updates, rpmFile(broken))));
    await hostMust(host, 'createrepo_c', ['--quiet', '--update', '--keep-all-metadata', this.updates]);
  }

  get matrixRow(): string {
    return this.manager === 'dnf5' ? 'dnf (dnf5)' : this.family;
  }

  async managerVersion(): Promise<string> {
    const r = await (await this.host()).exec(this.manager === 'dnf5' ? 'dnf5' : 'dnf', ['--version']);
    const v = /(\d+\.\d+\.\d+)/.exec(r.stdout)?.[1] ?? '?';
    return this.manager === 'dnf5' ? `dnf5 ${v}` : `dnf ${v}`;
  }

  version(n: 1 | 2): string {
    return VERSIONS[n];
  }

  async fingerprint(): Promise<string> {
    return treeFingerprint((await this.host()).outside(this.base));
  }

  async dispose(): Promise<void> {
    if (this.base) await rm((await this.host()).outside(this.base), { recursive: true, force: true });
    this.base = '';
  }
}

export class DnfSandbox extends RpmSandbox {
  constructor(generation: Generation = 'bookworm', manager: 'dnf' | 'dnf5' = 'dnf') {
    super('dnf', generation, manager);
  }
}

export class YumSandbox extends RpmSandbox {
  constructor(generation: Generation = 'bookworm') {
    super('yum', generation);
  }
}
