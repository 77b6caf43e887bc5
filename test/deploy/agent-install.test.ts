import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tarballEntries } from '../../scripts/dev/release';
import { REPO_ROOT } from '../../scripts/dev/temporal-server';
import { renderLog } from '../../scripts/dev/log-lines';
import { Stack } from '../support/stack';
import { waitFor } from '../support/wait';
import { layout, runInstall, serviceSettings, startLikeSystemd } from './install';

const modeOf = (p: string) => statSync(p).mode & 0o777;
const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security'];

/**
 * The agent as an admin installs it on a second host: `npm run release` builds the tarball, its
 * own install.sh installs it (below a temporary root, so this machine is untouched), and the agent
 * started exactly as the installed systemd unit says (its ExecStart, its EnvironmentFile, systemd's
 * PATH) enrols with a real API, agent gate and Temporal and runs a dry-run: the proof that the
 * tarball holds everything the agent needs. Then uninstall, keeping and purging state.
 */
describe('the agent release tarball, installed with install.sh', () => {
  const stack = new Stack();
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'pn-install-'));
  const root = path.join(tmp, 'root');
  const L = layout(root);
  let tarball = '';
  let installer = '';
  let fixtureDir = '';
  let installOutput = '';

  before(async () => {
    const started = Date.now();
    // The npm script's own program, as a child process: what `npm run release` runs after the build.
    const built = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(process.execPath, [path.join(REPO_ROOT, 'dist/scripts/dev/release.js'), '--out', tmp]);
      let out = '';
      child.stdout.on('data', (b: Buffer) => (out += b.toString()));
      child.stderr.on('data', (b: Buffer) => (out += b.toString()));
      child.on('exit', (code) => resolve({ code, out }));
    });
    assert.equal(built.code, 0, built.out);
    console.log(`release: ${built.out.trim()} (test saw ${Date.now() - started} ms)`);
    const { version } = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8'));
    tarball = path.join(tmp, `patchnanny-agent-${version}.tar.gz`);
    // On the host: extract, run the install.sh it contains.
    const extracted = path.join(tmp, 'extracted');
    spawnSync('mkdir', [extracted]);
    assert.equal(spawnSync('tar', ['-xzf', tarball, '-C', extracted]).status, 0);
    installer = path.join(extracted, `patchnanny-agent-${version}`, 'install.sh');
    await stack.start();
    fixtureDir = stack.tmpDir();
    writeFileSync(path.join(fixtureDir, 'plan.txt'), PLAN.join('\n') + '\n');
  });
  after(async () => {
    await stack.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('holds the compiled agent and its packages, the installer and the unit, and no control-plane code', () => {
    const entries = tarballEntries(tarball).map((e) => e.replace(/^patchnanny-agent-[^/]+\//, ''));
    for (const needed of [
      'install.sh',
      'patchnanny-agent.service',
      'VERSION',
      'README.md',
      'dist/agent-worker/main.js',
      'dist/activities/agent/index.js',
      'node_modules/@temporalio/worker/package.json',
      'node_modules/zod/package.json',
    ])
      assert.ok(entries.includes(needed), `${needed} is in the tarball`);
    const unwanted = entries.filter((e) =>
      /^dist\/(api|gate|control-worker|workflows|db|test|bench|scripts)\/|^node_modules\/(knex|koa|pg|@electric-sql)\/|^dist\/.*\.ts$|^src\//.test(
        e,
      ),
    );
    assert.deepEqual(unwanted, [], 'the API, gate, database code and their packages stay off the hosts');
  });

  it('installs from the extracted tarball with the config 0600, the token 0600, the state 0700 and a current link', () => {
    const keys = path.join(tmp, 'release-keys');
    writeFileSync(keys, `# the stack's release key\n${stack.scriptKey.publicLine}\n`);
    const r = runInstall(
      installer,
      [
        '--root',
        root,
        '--api-url',
        stack.baseUrl,
        '--gate',
        stack.gate.address,
        '--enrol-token-file',
        '-', // from standard input: a token never goes on a command line
        '--trusted-script-keys-file',
        keys,
        '--node',
        process.execPath,
        '--hostname',
        'installed-host',
        '--family',
        'apt',
        // The fixture patch script's state folder, passed to scripts by name like a proxy variable.
        '--set',
        `PN_FIXTURE_DIR=${fixtureDir}`,
        '--script-env',
        'PN_FIXTURE_DIR',
      ],
      `${stack.enrolToken}\n`,
    );
    installOutput = r.stdout + r.stderr;
    assert.equal(r.status, 0, installOutput);
    assert.match(r.stdout, /config OK: .*agent for installed-host \(apt\).*enrols with enrolment token file/);
    assert.equal(modeOf(L.confDir), 0o700);
    assert.equal(modeOf(L.config), 0o600);
    assert.equal(modeOf(L.token), 0o600);
    assert.equal(readFileSync(L.token, 'utf8').trim(), stack.enrolToken);
    assert.equal(modeOf(L.state), 0o700);
    assert.equal(modeOf(L.unit), 0o644);
    assert.ok(lstatSync(path.join(L.prefix, 'current')).isSymbolicLink());
    assert.match(readlinkSync(path.join(L.prefix, 'current')), /^\d+\.\d+\.\d+/);
    const settings = Object.fromEntries(serviceSettings(readFileSync(L.unit, 'utf8')));
    assert.equal(settings.ExecStart, `${process.execPath} ${L.prefix}/current/dist/agent-worker/main.js`);
    assert.equal(settings.EnvironmentFile, L.config);
    assert.equal(settings.Restart, 'on-failure');
    assert.equal(settings.RestartPreventExitStatus, '77');
    assert.doesNotMatch(readFileSync(L.config, 'utf8'), new RegExp(stack.enrolToken), 'the token is not in the config');
  });

  it("the installed agent's --check-config accepts the written config and refuses a bad one, naming each problem", () => {
    const agent = path.join(L.prefix, 'current/dist/agent-worker/main.js');
    const good = spawnSync(process.execPath, [agent, '--check-config', L.config], { encoding: 'utf8' });
    assert.equal(good.status, 0, good.stderr);
    assert.match(good.stdout, /^config OK: /);

    const bad = path.join(L.confDir, 'bad.env');
    const text = readFileSync(L.config, 'utf8').replace(/^PATCHNANNY_API_URL=.*$/m, 'PATCHNANNY_API_URL=not-a-url');
    writeFileSync(bad, `${text}PATCHNANNY_AGENT_STATEDIR=/tmp/x\n`, { mode: 0o600 });
    const refused = spawnSync(process.execPath, [agent, '--check-config', bad], { encoding: 'utf8' });
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /invalid agent configuration in .*bad\.env/);
    assert.match(refused.stderr, /PATCHNANNY_AGENT_STATEDIR: not an agent setting/);
    assert.match(refused.stderr, /PATCHNANNY_API_URL: PATCHNANNY_API_URL must be the API base URL/);
    rmSync(bad);
  });

  it('install.sh refuses a configuration the agent refuses and leaves the installed one as it was', () => {
    const before = readFileSync(L.config, 'utf8');
    const r = runInstall(installer, [
      '--root',
      root,
      '--node',
      process.execPath,
      '--api-url',
      stack.baseUrl,
      '--gate',
      stack.gate.address,
      '--set',
      'PATCHNANNY_AGENT_CHECK_MS=soon',
    ]);
    assert.equal(r.status, 1, r.stdout);
    assert.match(r.stderr, /PATCHNANNY_AGENT_CHECK_MS/);
    assert.match(r.stderr, /the agent refuses this configuration .* nothing was installed/);
    assert.equal(readFileSync(L.config, 'utf8'), before);
    assert.deepEqual(
      readdirSync(L.confDir).filter((f) => f.startsWith('.')),
      [],
      'no temporary file is left behind',
    );
  });

  it('systemd-analyze verify passes on the installed unit, and would flag a broken one', () => {
    const ok = spawnSync('systemd-analyze', ['verify', L.unit], { encoding: 'utf8' });
    assert.equal(ok.status, 0, ok.stderr);
    // verify exits 0 on settings it ignores, so any line it prints is a failure.
    assert.equal(ok.stderr + ok.stdout, '');
    const broken = path.join(tmp, 'broken.service');
    writeFileSync(broken, readFileSync(L.unit, 'utf8').replace('RestartSec=5s', 'RestartSec=soon'));
    const flagged = spawnSync('systemd-analyze', ['verify', broken], { encoding: 'utf8' });
    assert.match(flagged.stderr, /Failed to parse sec value/);
  });

  it('the agent started as the unit starts it enrols through the gate and runs a dry-run', async () => {
    const child = startLikeSystemd(L.unit);
    let out = '';
    child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
    try {
      const agentId = await waitFor(
        'the installed agent to poll its queue',
        () => {
          if (child.exitCode !== null) throw new Error(`the installed agent exited ${child.exitCode}:\n${out}`);
          return /\[agent\] (\S+) .* polling/.exec(renderLog(out))?.[1];
        },
        60_000,
      );
      const listed = await stack.http('GET', `/v1/agents/${agentId}`);
      assert.equal(listed.status, 200);
      assert.equal(listed.body.agent.hostname, 'installed-host');
      assert.equal(listed.body.agent.status, 'accepted');
      assert.equal(modeOf(path.join(L.state, 'identity.json')), 0o600);

      const started = await stack.http('POST', '/v1/runs', { body: { agentId, mode: 'dry-run' } });
      assert.equal(started.status, 202, JSON.stringify(started.body));
      const run = await stack.waitForOutcome(started.body.run.id, 60_000);
      assert.equal(run.outcome, 'completed', JSON.stringify(run));
      assert.equal(run.plan.length, 1);
      assert.equal(run.plan[0].name, 'openssl');
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
    }
  });

  it('--uninstall removes the agent and its unit and keeps config and identity; --purge removes those too', () => {
    const kept = runInstall(installer, ['--root', root, '--uninstall']);
    assert.equal(kept.status, 0, kept.stderr);
    assert.equal(existsSync(L.prefix), false);
    assert.equal(existsSync(L.unit), false);
    assert.ok(existsSync(L.config), 'config kept');
    assert.ok(existsSync(path.join(L.state, 'identity.json')), 'identity kept: a reinstall is the same agent');

    const purged = runInstall(installer, ['--root', root, '--uninstall', '--purge']);
    assert.equal(purged.status, 0, purged.stderr);
    assert.equal(existsSync(L.confDir), false);
    assert.equal(existsSync(L.state), false);
    // What is left below the root: the empty standard folders, nothing of the agent.
    const left = spawnSync('find', [root, '-mindepth', '1', '-not', '-type', 'd'], { encoding: 'utf8' });
    assert.equal(left.stdout, '');
  });
});
