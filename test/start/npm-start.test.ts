import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { freePort } from '../../scripts/dev/temporal-server';
import { DIST, FIXTURE_SCRIPTS } from '../support/stack';

/**
 * `npm start`'s entry as a user runs it, on its defaults: no DATABASE_URL (so the embedded
 * PGlite), the local agent detecting this machine. It reuses the test run's Temporal server
 * (TEMPORAL_ADDRESS, which start.ts honours) and serves the fixture script, so the dry-run
 * touches no package manager.
 */
describe('npm start', () => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'pn-npm-start-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  const refused = (port: number) =>
    new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(false)));
      s.once('error', () => resolve(true));
    });

  it(
    'comes up on the embedded PGlite database with a local agent, runs a dry-run through it, and stops cleanly',
    { timeout: 300_000 },
    async () => {
      const dataDir = path.join(tmp, 'data');
      const fixtureDir = path.join(tmp, 'fixture');
      mkdirSync(fixtureDir);
      writeFileSync(path.join(fixtureDir, 'plan.txt'), 'openssl amd64 3.0.15-1 3.0.16-1 bookworm-security\n');
      const [apiPort, gatePort, gateHealthPort] = [await freePort(), await freePort(), await freePort()];
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        PATCHNANNY_DATA_DIR: dataDir,
        PORT: String(apiPort),
        PATCHNANNY_GATE_LISTEN: `127.0.0.1:${gatePort}`,
        PATCHNANNY_GATE_HEALTH_LISTEN: `127.0.0.1:${gateHealthPort}`,
        PATCHNANNY_CONTROL_QUEUE: `patch-control-start-${randomBytes(4).toString('hex')}`,
        PATCHNANNY_SCRIPTS_DIR: FIXTURE_SCRIPTS,
        PN_FIXTURE_DIR: fixtureDir,
        PATCHNANNY_SCRIPT_ENV: 'PN_FIXTURE_DIR',
      };
      for (const name of [
        'DATABASE_URL',
        'PATCHNANNY_ADMIN_TOKENS',
        'PATCHNANNY_ENROL_TOKEN',
        'PATCHNANNY_AGENT_FAMILY',
      ])
        delete env[name];
      assert.ok(env.TEMPORAL_ADDRESS, 'the test runner provides its Temporal server');

      const child = spawn(process.execPath, [path.join(DIST, 'scripts/dev/start.js')], {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      try {
        // Wait for the local agent's own line: it registers only once the API is healthy.
        const agentId = await new Promise<string>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`the local agent did not start:\n${out}`)), 180_000);
          void exited.then((code) => reject(new Error(`npm start exited ${code}:\n${out}`)));
          const check = () => {
            const m = /agent\s*\| \[agent\] (\S+) .* polling/.exec(out);
            if (m) {
              clearTimeout(timer);
              resolve(m[1]);
            }
          };
          child.stdout.on('data', check);
        });
        assert.match(
          out,
          new RegExp(`db\\s+\\| embedded PGlite in .* on postgres://postgres@localhost/postgres\\?host=`),
        );
        assert.ok(existsSync(path.join(dataDir, 'pglite')), 'the database lives in the data folder');
        assert.match(out, new RegExp(`gate\\s+\\| \\[gate\\] listening on 127.0.0.1:${gatePort} `));
        assert.match(out, new RegExp(`agent gate\\s+127.0.0.1:${gatePort}`), 'the banner names the gate');

        const token = readFileSync(path.join(dataDir, 'admin-token'), 'utf8').trim();
        const api = async (method: string, url: string, body?: unknown) => {
          const res = await fetch(`http://127.0.0.1:${apiPort}${url}`, {
            method,
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
            body: body === undefined ? undefined : JSON.stringify(body),
          });
          return { status: res.status, body: (await res.json()) as any };
        };
        const agents = await api('GET', '/v1/agents');
        assert.deepEqual(
          agents.body.agents.map((a: any) => [a.id, a.family]),
          [[agentId, 'apt']],
          'the local agent registered itself as this (Debian) machine',
        );
        // Enrolled with a token of its own, made through the API: single-use, pre-accepted, now spent.
        assert.equal(agents.body.agents[0].status, 'accepted');
        const tokens = await api('GET', '/v1/enrolment-tokens');
        assert.deepEqual(
          tokens.body.enrolmentTokens.map((t: any) => [t.maxUses, t.uses, t.preAccepted]),
          [[1, 1, true]],
          'one single-use pre-accepted enrolment token, used once',
        );
        const row = await api('GET', `/v1/agents/${agentId}`);
        assert.equal(row.body.agent.acceptedAt !== null, true);
        assert.ok(!existsSync(path.join(dataDir, 'enrol-token')), 'no static enrolment token any more');
        const started = await api('POST', '/v1/runs', { agentId, mode: 'dry-run' });
        assert.equal(started.status, 202, JSON.stringify(started.body));
        const deadline = Date.now() + 120_000;
        let run: any;
        while (!run?.outcome && Date.now() < deadline) {
          run = (await api('GET', `/v1/runs/${started.body.run.id}`)).body.run;
          if (!run?.outcome) await new Promise((r) => setTimeout(r, 200));
        }
        assert.equal(run.outcome, 'completed', JSON.stringify(run));
        assert.deepEqual(
          run.plan.map((p: any) => [p.name, p.candidate]),
          [['openssl', '3.0.16-1']],
        );
        assert.equal(readFileSync(path.join(fixtureDir, 'calls.log'), 'utf8'), 'dry-run\n', 'the local agent ran it');
        assert.doesNotMatch(out, /\[gate\] refused/, 'the local agent went through the gate without a refusal');
      } finally {
        child.kill('SIGTERM');
      }
      const code = await Promise.race([
        exited,
        new Promise<string>((r) => setTimeout(() => r('still running'), 60_000)),
      ]);
      if (code === 'still running') child.kill('SIGKILL');
      assert.equal(code, 0, `npm start stops cleanly on SIGTERM:\n${out.slice(-2000)}`);
      assert.ok(await refused(apiPort), 'the API is gone');
      assert.ok(!existsSync(path.join(dataDir, 'run', '.s.PGSQL.5432')), 'the PGlite socket is gone');
      assert.ok(await refused(gatePort), 'the gate is gone');
    },
  );
});
