import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import path from 'node:path';
import { describe, it } from 'node:test';
import { localClosure } from '../../scripts/dev/release';
import { REPO_ROOT } from '../../scripts/dev/temporal-server';

/**
 * What can be proven about the image without a container runtime (none runs on this machine
 * kind): read the Dockerfile and .dockerignore, and check them against this checkout after
 * `npm run build` — every COPY source exists, every file the entry points require (followed from
 * each entry point) is in what the runtime stage copies, every package they require is a
 * production dependency (the runtime stage installs only those), base images are pinned, the
 * user is not root, no secret is baked in. Not proven here: that `docker build` succeeds.
 */

/** The commands docker-compose.yml runs with this image (and the image's own CMD). */
const ENTRY_POINTS = [
  'dist/api/main.js',
  'dist/gate/main.js',
  'dist/agent-worker/main.js',
  'dist/runtime/healthcheck.js',
];
/** Files the processes read at run time without requiring them. */
const DATA_FILES = ['dist/workflow-bundle.js', 'scripts/patch/apt-update.sh', 'scripts/patch/dnf-update.sh'];

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  name: string;
  from: string;
  workdir: string;
  lines: Instruction[];
}

function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const joined = text.replace(/\\\n/g, ' ');
  for (const raw of joined.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const [, op, args] = /^(\S+)\s+(.*)$/.exec(line) ?? [];
    const upper = op.toUpperCase();
    if (upper === 'FROM') {
      const [from, , name] = args.split(/\s+/);
      stages.push({ name: name ?? String(stages.length), from, workdir: '/', lines: [] });
      continue;
    }
    const stage = stages.at(-1)!;
    if (upper === 'WORKDIR') stage.workdir = path.posix.resolve(stage.workdir, args);
    stage.lines.push({ op: upper, args });
  }
  return stages;
}

/** A COPY's flags, sources and destination (JSON array form or plain words). */
function copyParts(args: string): { from?: string; sources: string[]; dest: string } {
  const words = args.trim().startsWith('[') ? (JSON.parse(args) as string[]) : args.split(/\s+/);
  const flags = words.filter((w) => w.startsWith('--'));
  const rest = words.filter((w) => !w.startsWith('--'));
  const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
  return { from, sources: rest.slice(0, -1), dest: rest.at(-1)! };
}

/** .dockerignore as Docker applies it: last matching pattern wins, `!` re-includes, a folder covers its contents. */
function dockerignore(text: string): (rel: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const glob = (negate ? l.slice(1) : l).replace(/^\/|\/$/g, '');
      // Go's filepath.Match plus Docker's `**` (any number of folders, none included).
      const re = glob
        .split(/(\*\*\/|\*\*|\*|\?)/)
        .map((t) =>
          t === '**/'
            ? '(?:.*/)?'
            : t === '**'
              ? '.*'
              : t === '*'
                ? '[^/]*'
                : t === '?'
                  ? '[^/]'
                  : t.replace(/[.+^${}()|[\]\\]/g, '\\$&'),
        )
        .join('');
      return { negate, re: new RegExp(`^${re}(/.*)?$`) };
    });
  return (rel) => rules.reduce((ignored, r) => (r.re.test(rel) ? !r.negate : ignored), false);
}

/** Files below `dir` (relative to it). */
function walk(dir: string, prefix = ''): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    const rel = prefix ? `${prefix}/${name}` : name;
    return statSync(p).isDirectory() ? walk(p, rel) : [rel];
  });
}

describe('the Dockerfile, checked against this build (no container runtime here)', () => {
  const stages = parseDockerfile(readFileSync(path.join(REPO_ROOT, 'Dockerfile'), 'utf8'));
  const ignored = dockerignore(readFileSync(path.join(REPO_ROOT, '.dockerignore'), 'utf8'));
  const runtime = stages.at(-1)!;
  const byName = new Map(stages.map((s) => [s.name, s]));

  /** Files the runtime stage ends up with below its WORKDIR, mapped to where they come from in this checkout. */
  const runtimeFiles = () => {
    const files = new Map<string, string>();
    for (const { op, args } of runtime.lines) {
      if (op !== 'COPY') continue;
      const { from, sources, dest } = copyParts(args);
      const base = from ? byName.get(from)!.workdir : null;
      for (const source of sources) {
        // From the build stage: its WORKDIR is this checkout after `npm run build`; else the build context.
        const rel = base ? path.posix.relative(base, path.posix.resolve(base, source)) : source;
        const abs = path.join(REPO_ROOT, rel);
        assert.ok(existsSync(abs), `COPY source ${source} exists (${abs})`);
        const target = path.posix.relative(runtime.workdir, path.posix.resolve(runtime.workdir, dest));
        if (statSync(abs).isDirectory()) {
          for (const f of walk(abs)) if (base || !ignored(`${rel}/${f}`)) files.set(`${target}/${f}`, `${rel}/${f}`);
        } else files.set(dest.endsWith('/') ? `${target}/${path.basename(rel)}` : target, rel);
      }
    }
    return files;
  };

  it('has a build stage and a runtime stage, each on a base image pinned to a full version', () => {
    assert.ok(stages.length >= 2, 'multi-stage');
    for (const s of stages) {
      if (byName.has(s.from)) continue;
      assert.match(s.from, /^[\w./-]+(:\d+\.\d+\.\d+[\w.-]*|@sha256:[0-9a-f]{64})$/, `${s.from} is pinned`);
    }
  });

  it('every COPY from the build context names files that exist and .dockerignore lets through', () => {
    for (const s of stages)
      for (const { op, args } of s.lines) {
        if (op !== 'COPY' && op !== 'ADD') continue;
        const { from, sources } = copyParts(args);
        if (from) continue;
        for (const source of sources) {
          if (source === '.') continue;
          assert.ok(existsSync(path.join(REPO_ROOT, source)), `${s.name}: COPY ${source} exists`);
          assert.equal(ignored(source), false, `${s.name}: COPY ${source} is not ignored`);
        }
      }
  });

  it('the runtime stage installs production packages only and runs as a user that is not root', () => {
    const runs = runtime.lines.filter((l) => l.op === 'RUN').map((l) => l.args);
    assert.ok(
      runs.some((r) => /\bnpm ci\b.*--omit=dev/.test(r)),
      'npm ci --omit=dev',
    );
    const user = runtime.lines.filter((l) => l.op === 'USER').at(-1)?.args;
    assert.ok(user, 'USER is set');
    const uid = user.split(':')[0];
    assert.notEqual(uid, '0');
    assert.notEqual(uid, 'root');
    if (/^\d+$/.test(uid))
      assert.ok(
        runs.some((r) => new RegExp(`useradd\\b.*--uid ${uid}\\b`).test(r)),
        `uid ${uid} is created`,
      );
  });

  it('every file the entry points require is in the runtime stage, and every package they require is a production dependency', () => {
    const files = runtimeFiles();
    const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8'));
    const cmd = runtime.lines.filter((l) => l.op === 'CMD').at(-1);
    assert.ok(cmd, 'CMD is set');
    const cmdEntry = (JSON.parse(cmd.args) as string[])[1];
    for (const entry of new Set([...ENTRY_POINTS, cmdEntry])) {
      const { files: needed, packages } = localClosure(REPO_ROOT, entry);
      const missing = needed.filter((f) => !files.has(f));
      assert.deepEqual(missing, [], `${entry}: required files the image lacks`);
      const notProduction = packages.filter((p) => !(p in pkg.dependencies));
      assert.deepEqual(notProduction, [], `${entry}: packages npm ci --omit=dev does not install`);
    }
    for (const f of DATA_FILES) assert.ok(files.has(f), `${f} is in the image`);
    const stray = [...files.keys()].filter((f) => /^dist\/(test|bench|scripts)\/|\.ts$|^scripts\/patch\/src\//.test(f));
    assert.deepEqual(stray, [], 'no tests, benchmark, dev tools or sources in the image');
  });

  it('bakes in no secret: no credential in ENV or ARG, and local state and env files stay out of the context', () => {
    for (const s of stages)
      for (const { op, args } of s.lines)
        if (op === 'ENV' || op === 'ARG')
          assert.doesNotMatch(args, /TOKEN|SECRET|PASSWORD|_KEY|DATABASE_URL|API_KEY/i, `${s.name}: ${op} ${args}`);
    for (const secret of ['.env', '.data/admin-token', '.data/gate-key', 'release-signing.key', 'tls/gate.pem'])
      assert.ok(ignored(secret), `${secret} is ignored`);
    assert.equal(ignored('.env.example'), false);
    assert.ok(ignored('node_modules/zod/package.json') && ignored('dist/api/main.js'), 'rebuilt, not copied');
  });

  it('the health check program answers 0 for a healthy endpoint and 1 otherwise', async () => {
    let status = 200;
    const server = createServer((_, res) => res.writeHead(status).end()).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/healthz`;
    const probe = () =>
      new Promise<number | null>((resolve) => {
        spawn(process.execPath, [path.join(REPO_ROOT, 'dist/runtime/healthcheck.js'), url]).on('exit', resolve);
      });
    try {
      assert.equal(await probe(), 0);
      status = 503;
      assert.equal(await probe(), 1);
    } finally {
      server.close();
    }
    assert.equal(spawnSync(process.execPath, [path.join(REPO_ROOT, 'dist/runtime/healthcheck.js')]).status, 1);
  });
});
