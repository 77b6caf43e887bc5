/**
 * The gate as the process npm start and a deployment run: dist/gate/main.js, configured by its
 * environment, with a health check, one log line per refusal, and a clean stop on SIGTERM.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { freePort } from '../../scripts/dev/temporal-server';
import { exited } from '../support/process-stack';
import { closeRawClients, pollActivity, rawCall, ws } from '../support/grpc-raw';
import { DIST, Stack } from '../support/stack';
import { waitFor } from '../support/wait';
import { renderLog } from '../../scripts/dev/log-lines';

interface GateProcess {
  child: ChildProcess;
  address: string;
  health: string;
  output: () => string;
}

async function spawnGate(env: Record<string, string>): Promise<GateProcess> {
  const [port, healthPort] = [await freePort(), await freePort()];
  let out = '';
  const child = spawn(process.execPath, [path.join(DIST, 'gate/main.js')], {
    env: {
      PATH: process.env.PATH,
      PATCHNANNY_GATE_LISTEN: `127.0.0.1:${port}`,
      PATCHNANNY_GATE_HEALTH_LISTEN: `127.0.0.1:${healthPort}`,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return { child, address: `127.0.0.1:${port}`, health: `http://127.0.0.1:${healthPort}/healthz`, output: () => out };
}

describe('the gate process (dist/gate/main.js)', () => {
  const stack = new Stack();
  const gates: GateProcess[] = [];
  before(() => stack.start());
  after(async () => {
    for (const g of gates) if (g.child.exitCode === null && g.child.signalCode === null) g.child.kill('SIGKILL');
    closeRawClients();
    await stack.stop();
  });

  const baseEnv = () => ({
    DATABASE_URL: stack.database.url,
    TEMPORAL_ADDRESS: stack.temporalEnv.TEMPORAL_ADDRESS,
    TEMPORAL_NAMESPACE: stack.temporalEnv.TEMPORAL_NAMESPACE,
    PATCHNANNY_GATE_KEY: randomBytes(32).toString('base64url'),
  });

  it('serves a real agent end to end, reports its health, logs refusals without tokens, and stops on SIGTERM', async () => {
    const gate = await spawnGate(baseEnv());
    gates.push(gate);
    const health = await waitFor('the gate to be healthy', async () => {
      const r = await fetch(gate.health).catch(() => null);
      return r?.status === 200 && (await r.json());
    });
    assert.deepEqual(health, { ok: true, db: true, temporal: true, openCalls: 0 });

    const agent = await stack.startAgent('through-process-gate', ['curl amd64 1 2 bookworm'], undefined, {
      TEMPORAL_ADDRESS: gate.address,
    });
    const r = await stack.http('POST', '/v1/runs', {
      body: { agentId: agent.id, mode: 'dry-run', approval: 'required' },
    });
    assert.equal(r.status, 202);
    const run = await stack.waitForOutcome(r.body.run.id);
    assert.equal(run.outcome, 'completed');
    assert.deepEqual(
      run.plan.map((p: any) => p.name),
      ['curl'],
    );

    // a refused call: one line naming agent, method and why; the token appears nowhere
    const denied = await pollActivity(gate.address, stack.temporalEnv.TEMPORAL_NAMESPACE, 'agent.someone-else', {
      token: agent.token,
    });
    assert.equal(denied.code, grpc.status.PERMISSION_DENIED);
    await waitFor('the refusal in the log', () => gate.output().includes('refused PollActivityTaskQueue'));
    assert.match(
      renderLog(gate.output()),
      new RegExp(
        `refused PollActivityTaskQueue agent=${agent.id} peer=\\S+: task queue "agent.someone-else" is not agent.${agent.id}`,
      ),
    );
    assert.ok(!gate.output().includes(agent.token), 'the agent token is never logged');

    await agent.stop();
    gate.child.kill('SIGTERM');
    assert.equal(await exited(gate.child), 0);
    assert.match(renderLog(gate.output()), /\[gate\] SIGTERM: stopping[\s\S]*\[gate\] stopped/);
  });

  it('reports an unreachable Temporal in its health check (503) and keeps refusing unknown callers', async () => {
    const gate = await spawnGate({ ...baseEnv(), TEMPORAL_ADDRESS: `127.0.0.1:${await freePort()}` });
    gates.push(gate);
    const health = await waitFor('a health answer', async () => {
      const r = await fetch(gate.health).catch(() => null);
      return r && { status: r.status, body: await r.json() };
    });
    assert.deepEqual(health, { status: 503, body: { ok: false, db: true, temporal: false, openCalls: 0 } });
    const r = await rawCall(gate.address, 'GetSystemInfo', ws.GetSystemInfoRequest.encode({}).finish());
    assert.equal(r.code, grpc.status.UNAUTHENTICATED);
    gate.child.kill('SIGTERM');
    assert.equal(await exited(gate.child), 0);
  });

  it('serves TLS: an agent that trusts the gate’s CA runs through it; a plaintext client gets nowhere', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pn-gate-tls-'));
    try {
      // A CA and a leaf for "gate.test" (rustls refuses a self-signed CA certificate as the leaf).
      const f = (name: string) => path.join(dir, name);
      const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
      ssl(
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=patchnanny test CA',
        '-keyout',
        f('ca.key'),
        '-out',
        f('ca.pem'),
      );
      ssl(
        'req',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-subj',
        '/CN=gate.test',
        '-keyout',
        f('gate.key'),
        '-out',
        f('gate.csr'),
      );
      writeFileSync(f('ext.cnf'), 'subjectAltName=DNS:gate.test\nbasicConstraints=CA:FALSE\n');
      ssl(
        'x509',
        '-req',
        '-in',
        f('gate.csr'),
        '-CA',
        f('ca.pem'),
        '-CAkey',
        f('ca.key'),
        '-CAcreateserial',
        '-days',
        '1',
        '-extfile',
        f('ext.cnf'),
        '-out',
        f('gate.pem'),
      );
      const gate = await spawnGate({
        ...baseEnv(),
        PATCHNANNY_GATE_TLS_CERT: f('gate.pem'),
        PATCHNANNY_GATE_TLS_KEY: f('gate.key'),
      });
      gates.push(gate);
      await waitFor(
        'the TLS gate to be healthy',
        async () => (await fetch(gate.health).catch(() => null))?.status === 200,
      );
      assert.match(gate.output(), /listening on \S+ \(TLS\)/);

      const agent = await stack.startAgent('through-tls-gate', ['zlib1g amd64 1 2 bookworm'], undefined, {
        TEMPORAL_ADDRESS: gate.address,
        TEMPORAL_TLS_CA: f('ca.pem'),
        TEMPORAL_TLS_SERVER_NAME: 'gate.test',
      });
      const r = await stack.http('POST', '/v1/runs', { body: { agentId: agent.id, mode: 'dry-run' } });
      assert.equal(r.status, 202);
      const run = await stack.waitForOutcome(r.body.run.id);
      assert.equal(run.outcome, 'completed');

      const plain = await rawCall(gate.address, 'GetSystemInfo', ws.GetSystemInfoRequest.encode({}).finish(), {
        token: agent.token,
        timeoutMs: 3000,
      });
      assert.notEqual(plain.code, grpc.status.OK, 'a plaintext client cannot talk to a TLS gate');
      await agent.stop();
      gate.child.kill('SIGTERM');
      assert.equal(await exited(gate.child), 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses to start without a long enough key, naming the variable', async () => {
    const gate = await spawnGate({ ...baseEnv(), PATCHNANNY_GATE_KEY: 'short' });
    gates.push(gate);
    assert.equal(await exited(gate.child), 1);
    assert.match(gate.output(), /PATCHNANNY_GATE_KEY: PATCHNANNY_GATE_KEY must be at least 32 characters/);
  });

  it('an agent given a namespace credential refuses to start', async () => {
    await assert.rejects(
      stack.startAgent('with-api-key', [], undefined, { TEMPORAL_API_KEY: 'namespace-secret' }),
      /TEMPORAL_API_KEY is a namespace credential/,
    );
  });
});
