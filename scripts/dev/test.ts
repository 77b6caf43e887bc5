/**
 * `npm test`: installs what the tests need when missing (Debian package managers, the Temporal
 * CLI, the official Temporal server for test/deploy), starts one real Temporal dev server on free
 * ports for the whole run, then runs every compiled test file with node's test runner. Each test
 * file makes its own PostgreSQL database.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  GENERATIONS,
  HOST_GENERATION,
  managersRoot,
  minbaseTarball,
  type Generation,
} from '../../test/scripts/generations';
import { formatMatrix, MATRIX_ENV, readCells } from './proof-matrix';
import { REPO_ROOT, startDevServer } from './temporal-server';

function testFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) return testFiles(p);
    return name.endsWith('.test.js') ? [p] : [];
  });
}

/**
 * The cached Debian roots the selected patch-script proofs need (issue 16), built before any test
 * file starts: one build per root, not one per proof process that wants it. Cold on a fresh
 * machine ~10–20 min (debootstrap + the managers, all roots in parallel); cached: instant.
 */
async function buildProofRoots(files: string[]): Promise<void> {
  const builds = new Map<string, Promise<string>>();
  for (const file of files) {
    const m = /^(apt|apt-through-agent|dnf|dnf5|yum|zypper|pacman)(?:-([a-z]+))?\.test\.js$/.exec(path.basename(file));
    if (!m || !path.dirname(file).endsWith(`${path.sep}scripts`)) continue;
    const generation = (m[2] ?? HOST_GENERATION) as Generation;
    if (!(GENERATIONS as readonly string[]).includes(generation)) continue;
    if (m[1].startsWith('apt')) builds.set(`${generation} minbase`, minbaseTarball(generation));
    else if (generation !== HOST_GENERATION) builds.set(`${generation} managers`, managersRoot(generation));
  }
  if (builds.size === 0) return;
  const started = Date.now();
  await Promise.all(builds.values());
  console.log(`proof roots (${[...builds.keys()].join(', ')}) ready in ${Date.now() - started} ms`);
}

async function main(): Promise<void> {
  execFileSync('bash', [path.join(REPO_ROOT, 'scripts/dev/install-test-deps.sh')], { stdio: 'inherit' });
  // The server build (~3 min cold) runs while the dev server's CLI is installed and started.
  const serverInstall = new Promise<number>((resolve) =>
    spawn('bash', [path.join(REPO_ROOT, 'scripts/dev/install-temporal-server.sh')], {
      stdio: ['ignore', 'ignore', 'inherit'],
    }).on('exit', (c) => resolve(c ?? 1)),
  );
  const filter = process.argv.slice(2);
  const root = path.join(REPO_ROOT, 'dist/test');
  const all = testFiles(root).sort();
  // Filters match the path below dist/test (`runs/`, `scripts/apt`), not the checkout's own path.
  const files = filter.length ? all.filter((f) => filter.some((x) => path.relative(root, f).includes(x))) : all;
  const roots = buildProofRoots(files);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'pn-test-temporal-'));
  const started = Date.now();
  const server = await startDevServer({
    dbFile: path.join(tmp, 'temporal.db'),
    logFile: path.join(tmp, 'temporal.log'),
    uiPort: null,
  });
  if ((await serverInstall) !== 0) {
    await server.stop();
    throw new Error('installing the Temporal server failed (scripts/dev/install-temporal-server.sh)');
  }
  try {
    await roots;
  } catch (err) {
    await server.stop();
    throw err;
  }
  console.log(`temporal dev server ${server.address} ready in ${Date.now() - started} ms; ${files.length} test files`);
  const matrixFile = path.join(tmp, 'proof-matrix.jsonl');
  const code = await new Promise<number>((resolve) => {
    const child = spawn(process.execPath, ['--test', '--test-reporter=spec', '--test-concurrency=3', ...files], {
      stdio: 'inherit',
      env: { ...process.env, TEMPORAL_ADDRESS: server.address, NODE_ENV: 'test', [MATRIX_ENV]: matrixFile },
    });
    child.on('exit', (c) => resolve(c ?? 1));
  });
  await server.stop();
  // The patch-script proofs' matrix, as one table at the end of the run (issue 16).
  const cells = readCells(matrixFile);
  if (cells.length > 0) console.log(formatMatrix(cells));
  if (code !== 0) console.error(`tests failed; Temporal server log: ${path.join(tmp, 'temporal.log')}`);
  else rmSync(tmp, { recursive: true, force: true });
  process.exit(code);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
