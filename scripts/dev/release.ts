/**
 * `npm run release [-- --out DIR]`: the agent's release tarball, `patchnanny-agent-<version>.tar.gz`
 * in `release/` (git-ignored). It holds what a host needs and nothing else, so no git clone and no
 * npm on the host: the compiled agent (the files `dist/agent-worker/main.js` requires, followed
 * from it, not the API or gate), the packages those require with their dependencies (copied from
 * this checkout's `npm ci` tree, so exactly the versions the tests ran), deploy/agent/install.sh
 * and the systemd unit. The host needs Node.js 20+ on glibc Linux (x86_64 or aarch64).
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { z } from 'zod';
import { REPO_ROOT } from './temporal-server';

export const AGENT_ENTRY = 'dist/agent-worker/main.js';
const REQUIRE = /\brequire\((["'])([^"']+)\1\)/g;
const BUILTIN = new Set(builtinModules);

/** The package a bare specifier names (`@scope/name/sub` → `@scope/name`), or null for a builtin. */
function packageName(spec: string): string | null {
  if (spec.startsWith('node:') || BUILTIN.has(spec.split('/')[0])) return null;
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

/** The compiled files `entry` requires, transitively (relative to `root`), and the packages they name. */
export function localClosure(root: string, entry: string): { files: string[]; packages: string[] } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const visit = (rel: string) => {
    if (files.has(rel)) return;
    files.add(rel);
    const code = readFileSync(path.join(root, rel), 'utf8');
    for (const [, , spec] of code.matchAll(REQUIRE)) {
      if (!spec.startsWith('.')) {
        const name = packageName(spec);
        if (name) packages.add(name);
        continue;
      }
      const base = path.join(path.dirname(rel), spec);
      const found = [base, `${base}.js`, `${base}.json`, path.join(base, 'index.js')].find(
        (c) => existsSync(path.join(root, c)) && statSync(path.join(root, c)).isFile(),
      );
      if (!found) throw new Error(`${rel} requires ${spec}, which is not in the build`);
      visit(found);
    }
  };
  visit(entry);
  return { files: [...files].sort(), packages: [...packages].sort() };
}

/** Where node would find package `name` from inside `fromDir` (a folder below `root`). */
function resolvePackageDir(root: string, fromDir: string, name: string): string | null {
  for (let dir = fromDir; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', name);
    if (existsSync(path.join(candidate, 'package.json'))) return candidate;
    if (dir === root || !dir.startsWith(root)) return null;
  }
}

const deps = z.record(z.string(), z.string()).optional();
const PackageDeps = z.object({ dependencies: deps, optionalDependencies: deps, peerDependencies: deps });

/**
 * The installed package folders `names` need at run time (dependencies, installed optional and peer
 * dependencies), as `npm ci --omit=dev` would lay them out for those names: paths relative to `root`.
 */
export function packageClosure(root: string, names: string[]): string[] {
  const dirs = new Set<string>();
  const visit = (fromDir: string, name: string, optional: boolean) => {
    const dir = resolvePackageDir(root, fromDir, name);
    if (!dir) {
      if (optional) return; // another platform's optional binary, or a peer nobody installed
      throw new Error(`package ${name} (needed from ${path.relative(root, fromDir) || '.'}) is not installed`);
    }
    const rel = path.relative(root, dir);
    if (dirs.has(rel)) return;
    dirs.add(rel);
    const pkg = PackageDeps.parse(JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')));
    for (const dep of Object.keys(pkg.dependencies ?? {})) visit(dir, dep, false);
    for (const dep of Object.keys({ ...pkg.optionalDependencies, ...pkg.peerDependencies })) visit(dir, dep, true);
  };
  for (const name of names) visit(root, name, false);
  return [...dirs].sort();
}

/** Native Temporal core builds for systems the agent does not run on (~30 MB each). */
const FOREIGN_CORE_BRIDGE = /node_modules\/@temporalio\/core-bridge\/releases\/(?!\w+-unknown-linux-gnu)[^/]+$/;

/** Type declarations, TypeScript sources and source maps: never loaded at run time (half the files, 38 MB). */
const TYPES_AND_MAPS = /\.([cm]?ts|map)$/;

/** Build the tarball into `outDir`; returns its path. `npm run build` must have run. */
export function buildAgentRelease(outDir: string): { tarball: string; version: string; files: number } {
  const root = REPO_ROOT;
  const { version } = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
  if (!existsSync(path.join(root, AGENT_ENTRY))) throw new Error(`${AGENT_ENTRY} is missing: run npm run build`);
  const name = `patchnanny-agent-${version}`;
  const stage = path.join(outDir, `.stage-${name}`);
  const top = path.join(stage, name);
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(top, { recursive: true });

  const { files, packages } = localClosure(root, AGENT_ENTRY);
  for (const rel of files) cpSync(path.join(root, rel), path.join(top, rel));
  let count = files.length;
  for (const rel of packageClosure(root, packages)) {
    cpSync(path.join(root, rel), path.join(top, rel), {
      recursive: true,
      // Nested node_modules are copied as packages of their own (only those the closure reaches);
      // other systems' native builds, type declarations and source maps are dead weight.
      filter: (src) => {
        const r = path.relative(root, src);
        if (r !== rel && /(^|\/)node_modules$/.test(r)) return false;
        if (FOREIGN_CORE_BRIDGE.test(r) || TYPES_AND_MAPS.test(r)) return false;
        if (statSync(src).isFile()) count++;
        return true;
      },
    });
  }
  for (const [from, to, mode] of [
    ['deploy/agent/install.sh', 'install.sh', 0o755],
    ['deploy/agent/patchnanny-agent.service', 'patchnanny-agent.service', 0o644],
    ['docs/agent-install.md', 'README.md', 0o644],
  ] as const) {
    cpSync(path.join(root, from), path.join(top, to));
    execFileSync('chmod', [mode.toString(8), path.join(top, to)]);
    count++;
  }
  writeFileSync(path.join(top, 'VERSION'), `${version}\n`);
  writeFileSync(
    path.join(top, 'package.json'),
    JSON.stringify(
      { name: 'patchnanny-agent', version, private: true, engines: { node: '>=20' }, main: AGENT_ENTRY },
      null,
      2,
    ) + '\n',
  );
  count += 2;

  mkdirSync(outDir, { recursive: true });
  const tarball = path.join(outDir, `${name}.tar.gz`);
  // Same bytes for the same tree: sorted names, one owner (root, as installed), fixed mtime, gzip -n.
  execFileSync('tar', [
    '--sort=name',
    '--owner=0',
    '--group=0',
    '--numeric-owner',
    '--mtime=@0',
    '-I',
    'gzip -n',
    '-cf',
    tarball,
    '-C',
    stage,
    name,
  ]);
  rmSync(stage, { recursive: true, force: true });
  return { tarball, version, files: count };
}

function main(): void {
  const args = process.argv.slice(2);
  const i = args.indexOf('--out');
  const outDir = path.resolve(i >= 0 && args[i + 1] ? args[i + 1] : path.join(REPO_ROOT, 'release'));
  const started = Date.now();
  const { tarball, files } = buildAgentRelease(outDir);
  const mb = (statSync(tarball).size / 1e6).toFixed(1);
  console.log(`${tarball}: ${files} files, ${mb} MB, in ${Date.now() - started} ms (needs Node.js 20+ on the host)`);
}

if (require.main === module) main();

/** For tests: the entries of a tarball (`tar -tzf`). */
export function tarballEntries(tarball: string): string[] {
  return execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8', maxBuffer: 64 << 20 })
    .split('\n')
    .filter(Boolean);
}
