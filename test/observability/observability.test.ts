/**
 * What an operator watches, read the way Prometheus and a log shipper read it: GET /metrics of
 * the real processes (API + control worker, gate, agent) while patch runs go through them, and
 * their stdout as JSON lines.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { stopChild } from '../../scripts/dev/processes';
import { freePort } from '../../scripts/dev/temporal-server';
import { closeRawClients, pollActivity } from '../support/grpc-raw';
import { ProcessStack } from '../support/process-stack';
import { ADMIN_TOKEN, DIST, type TestAgent } from '../support/stack';
import { waitFor } from '../support/wait';

const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security'];

/** One sample of a Prometheus text exposition: the value of `name` whose labels include `labels`. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

async function scrape(address: string): Promise<string> {
  const res = await fetch(`http://${address}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
  return res.text();
}

/** Every line of a process's output as a JSON log entry (fails naming the first line that is not). */
function logEntries(output: string): Record<string, unknown>[] {
  return output
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      let entry: unknown;
      assert.doesNotThrow(() => (entry = JSON.parse(l)), `not a JSON line: ${l}`);
      const e = entry as Record<string, unknown>;
      assert.ok(['trace', 'debug', 'info', 'warn', 'error', 'fatal'].includes(String(e.level)), `no level: ${l}`);
      assert.equal(typeof e.msg, 'string', `no msg: ${l}`);
      assert.ok(!Number.isNaN(Date.parse(String(e.time))), `no ISO time: ${l}`);
      return e;
    });
}

describe('observability: /metrics of the API, the gate and the agent, and JSON logs', () => {
  const stack = new ProcessStack();
  const at = { api: '', gate: '', agent: '' };
  let gate: { child: ChildProcess; address: string; output: () => string };
  let agent: TestAgent;

  before(async () => {
    at.api = `127.0.0.1:${await freePort()}`;
    stack.apiExtraEnv.PATCHNANNY_METRICS_LISTEN = at.api;
    await stack.start();
    // The gate as its own process, with metrics, between the agent and Temporal.
    const [port, health, metrics] = [await freePort(), await freePort(), await freePort()];
    at.gate = `127.0.0.1:${metrics}`;
    let out = '';
    const child = spawn(process.execPath, [path.join(DIST, 'gate/main.js')], {
      env: {
        PATH: process.env.PATH,
        DATABASE_URL: stack.database.url,
        TEMPORAL_ADDRESS: stack.temporalEnv.TEMPORAL_ADDRESS,
        TEMPORAL_NAMESPACE: stack.temporalEnv.TEMPORAL_NAMESPACE,
        PATCHNANNY_GATE_KEY: randomBytes(32).toString('base64url'),
        PATCHNANNY_GATE_LISTEN: `127.0.0.1:${port}`,
        PATCHNANNY_GATE_HEALTH_LISTEN: `127.0.0.1:${health}`,
        PATCHNANNY_METRICS_LISTEN: at.gate,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    gate = { child, address: `127.0.0.1:${port}`, output: () => out };
    await waitFor('the gate', async () => (await fetch(`http://127.0.0.1:${health}/healthz`).catch(() => null))?.ok);
    at.agent = `127.0.0.1:${await freePort()}`;
    agent = await stack.startAgent('observed-host', PLAN, undefined, {
      TEMPORAL_ADDRESS: gate.address,
      PATCHNANNY_METRICS_LISTEN: at.agent,
    });
  });
  after(async () => {
    closeRawClients();
    await stack.stop();
    await stopChild(gate.child);
  });

  const startRun = async (approval = 'required') => {
    const r = await stack.http('POST', '/v1/runs', { body: { agentId: agent.id, mode: 'apply', approval } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return r.body.run.id as string;
  };

  it('runs waiting for approval, runs ended by outcome and requests by route pattern move as runs go through', async () => {
    const before = await scrape(at.api);
    const completed0 = sample(before, 'patchnanny_runs_ended_total', { outcome: 'completed' }) ?? 0;
    const rejected0 = sample(before, 'patchnanny_runs_ended_total', { outcome: 'rejected' }) ?? 0;
    const started0 = sample(before, 'patchnanny_runs_started_total', { mode: 'apply' }) ?? 0;
    assert.equal(sample(before, 'patchnanny_runs_awaiting_approval'), 0);

    const id = await startRun();
    const waiting = await stack.waitForRun(id, (r) => r.phase === 'awaiting-approval' || r.outcome !== null);
    assert.equal(waiting.phase, 'awaiting-approval');
    const whileWaiting = await scrape(at.api);
    assert.equal(sample(whileWaiting, 'patchnanny_runs_awaiting_approval'), 1);
    assert.equal(sample(whileWaiting, 'patchnanny_runs_in_progress', { phase: 'awaiting-approval' }), 1);
    assert.equal(sample(whileWaiting, 'patchnanny_runs_in_progress', { phase: 'applying' }), 0);
    assert.equal(sample(whileWaiting, 'patchnanny_runs_started_total', { mode: 'apply' }), started0 + 1);

    assert.equal((await stack.approve(id, waiting.planHash)).status, 200);
    assert.equal((await stack.waitForOutcome(id)).outcome, 'completed');
    const rejectedId = await startRun();
    await stack.waitForRun(rejectedId, (r) => r.phase === 'awaiting-approval');
    const rej = await stack.http('POST', `/v1/runs/${rejectedId}/reject`, { body: { reason: 'not today' } });
    assert.equal(rej.status, 200);
    assert.equal((await stack.waitForOutcome(rejectedId)).outcome, 'rejected');

    const after = await scrape(at.api);
    assert.equal(sample(after, 'patchnanny_runs_awaiting_approval'), 0);
    assert.equal(sample(after, 'patchnanny_runs_in_progress', { phase: 'awaiting-approval' }), 0);
    assert.equal(sample(after, 'patchnanny_runs_ended_total', { outcome: 'plan-drift' }), 0, 'every outcome from 0');
    assert.equal(sample(after, 'patchnanny_runs_ended_total', { outcome: 'completed' }), completed0 + 1);
    assert.equal(sample(after, 'patchnanny_runs_ended_total', { outcome: 'rejected' }), rejected0 + 1);
    // Requests by route pattern and status; a run id (or any raw path) is never a label value.
    assert.ok(
      (sample(after, 'patchnanny_http_request_duration_seconds_count', {
        method: 'POST',
        route: '/v1/runs/:id/approve',
        status: '200',
      }) ?? 0) >= 1,
    );
    assert.ok(
      (sample(after, 'patchnanny_http_request_duration_seconds_count', {
        method: 'GET',
        route: '/v1/runs/:id',
        status: '200',
      }) ?? 0) >= 1,
    );
    assert.doesNotMatch(after, /route="[^"]*patch-run\./);
    // The agent read its record when it started: its last-seen age is a small number of seconds.
    const age = sample(after, 'patchnanny_agent_last_seen_age_seconds', { agent_id: agent.id });
    assert.ok(age !== undefined && age >= 0 && age < 300, `last-seen age ${age}`);
    assert.equal(sample(after, 'patchnanny_agents', { status: 'accepted' }), 1);
    // The Temporal SDK's own metrics, from the control worker's runtime.
    assert.match(after, /^temporal_\w+/m, 'the SDK runtime metrics are served');
    assert.ok((sample(after, 'temporal_workflow_completed') ?? 0) >= 1, 'the SDK counted completed workflows');
  });

  it('the gate counts calls by method and result, a refusal with its code; the agent counts activities and scripts', async () => {
    const denied = await pollActivity(gate.address, stack.temporalEnv.TEMPORAL_NAMESPACE, 'agent.someone-else', {
      token: agent.token,
    });
    assert.equal(denied.code, grpc.status.PERMISSION_DENIED);
    const g = await scrape(at.gate);
    const labels = { method: 'PollActivityTaskQueue', result: 'refused', code: 'PERMISSION_DENIED' };
    assert.equal(sample(g, 'patchnanny_gate_calls_total', labels), 1);
    assert.ok(
      (sample(g, 'patchnanny_gate_calls_total', { method: 'RespondActivityTaskCompleted', result: 'forwarded' }) ??
        0) >= 1,
    );
    assert.ok((sample(g, 'patchnanny_gate_open_calls') ?? 0) >= 1, 'the agent long-polls through the gate');
    assert.doesNotMatch(g, new RegExp(agent.token), 'no token in any label');

    // A completed run through this agent (the previous test ran two).
    await waitFor('the agent counted its scripts', async () => {
      const a = await scrape(at.agent);
      return (sample(a, 'patchnanny_agent_script_duration_seconds_count', { mode: 'apply', result: 'ok' }) ?? 0) >= 1;
    });
    const a = await scrape(at.agent);
    assert.ok(
      (sample(a, 'patchnanny_agent_activity_duration_seconds_count', {
        activity: 'scriptExecute',
        result: 'completed',
      }) ?? 0) >= 3,
      'plan, re-plan and apply of the approved run, and the rejected run’s plan',
    );
    assert.ok((sample(a, 'patchnanny_agent_activity_duration_seconds_count', { activity: 'hashVerify' }) ?? 0) >= 1);
    assert.ok(
      (sample(a, 'patchnanny_agent_script_duration_seconds_count', { mode: 'dry-run', result: 'ok' }) ?? 0) >= 2,
    );
    assert.match(a, /^temporal_\w+/m, 'the SDK runtime metrics of the agent are served');
    assert.match(a, /^process_cpu_seconds_total /m);
  });

  it('every process logs JSON lines with a level; run lines carry the run id; no token is ever written', async () => {
    const id = await startRun('auto');
    assert.equal((await stack.waitForOutcome(id)).outcome, 'completed');

    const api = logEntries(stack.apiOutput());
    const mine = api.filter((e) => e.runId === id).map((e) => String(e.msg));
    assert.ok(mine.includes('run started'), `the control worker says the run started: ${JSON.stringify(mine)}`);
    assert.ok(mine.includes('run ended: completed'), 'and how it ended');
    assert.ok(mine.includes('POST /v1/runs 202'), 'the request that started it names it too');
    assert.ok(api.every((e) => e.proc === 'api'));

    const agentLines = logEntries(agent.output());
    const agentRun = agentLines.filter((e) => e.runId === id).map((e) => String(e.msg));
    assert.ok(
      agentRun.includes('scriptExecute started') && agentRun.includes('scriptExecute completed'),
      agentRun.join(', '),
    );
    assert.ok(agentLines.some((e) => e.level === 'info' && /polling agent\./.test(String(e.msg))));

    const gateLines = logEntries(gate.output());
    assert.ok(gateLines.some((e) => e.level === 'warn' && /refused PollActivityTaskQueue/.test(String(e.msg))));

    for (const [name, out] of [
      ['api', stack.apiOutput()],
      ['agent', agent.output()],
      ['gate', gate.output()],
    ])
      for (const secret of [ADMIN_TOKEN, agent.token, stack.enrolToken])
        assert.ok(!out.includes(secret), `the ${name} log never holds a token`);
    // Script output bodies stay in the run record, not in the log.
    assert.doesNotMatch(agent.output(), /fixture: (dry-run|apply) with/);
  });
});
