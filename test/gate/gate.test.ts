/**
 * The agent gate (issue 13) with a real Temporal server, real PostgreSQL, real agent processes and
 * the gate in front: what agent A can and cannot do with its own token. Raw requests are built with
 * @temporalio/proto and sent with grpc-js, as a compromised host could send them.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { temporal } from '@temporalio/proto';
import { bindToken, unbindToken } from '../../gate/binding';
import { Stack } from '../support/stack';
import { closeRawClients, pollActivity, rawCall, ws } from '../support/grpc-raw';
import { fixture } from '../support/fixture';

const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security'];

describe('the agent gate confines each agent to its own queue and tasks', { concurrency: true }, () => {
  const stack = new Stack();
  let namespace = '';
  before(async () => {
    await stack.start();
    namespace = stack.temporalEnv.TEMPORAL_NAMESPACE;
  });
  after(async () => {
    closeRawClients();
    await stack.stop();
  });

  /** Register an agent without a process; its id and token. */
  const register = async (hostname: string) => {
    const r = await stack.http('POST', '/v1/agents', {
      token: stack.enrolToken,
      body: { hostname, os: { id: 'debian', versionId: '12', family: 'apt' } },
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return { id: r.body.agent.id as string, token: r.body.token as string };
  };
  const startRun = async (agentId: string, body: Record<string, unknown> = {}) => {
    const r = await stack.http('POST', '/v1/runs', {
      body: { agentId, mode: 'dry-run', approval: 'required', ...body },
    });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return r.body.run.id as string;
  };
  const gate = () => stack.gate.address;
  const failure = temporal.api.failure.v1.Failure.create({
    message: 'forged by another host',
    applicationFailureInfo: { type: 'Forged', nonRetryable: true },
  });

  it("A's own run goes end to end through the gate, and the SDK worker needs nothing the gate refuses", async () => {
    const a = await stack.startAgent('gate-own', PLAN);
    const id = await startRun(a.id, { mode: 'apply', approval: 'auto' });
    const run = await stack.waitForOutcome(id);
    assert.equal(run.outcome, 'completed');
    assert.deepEqual(
      run.plan.map((p: any) => p.name),
      ['openssl'],
    );
    await a.stop(); // a clean worker shutdown goes through the gate as well
    const mine = stack.gateLog.filter((l) => l.includes(`agent=${a.id} `));
    assert.deepEqual(mine, [], 'the real agent made no call the gate refused');
    assert.ok(stack.gate.stats.forwarded > 0);
    console.log(`methods forwarded for a real agent: ${JSON.stringify(stack.gate.stats.byMethod)}`);
    assert.ok(!stack.gateLog.join('\n').includes(a.token), 'no token is ever logged');
  });

  it("A cannot poll B's queue, nor answer, fail or heartbeat B's task with a borrowed, raw or forged token", async () => {
    const a = await register('gate-a');
    const b = await register('gate-b');
    // A polling agent.B (and a queue of no agent) is refused before it reaches Temporal.
    for (const queue of [`agent.${b.id}`, 'patch-control', `agent.${a.id}x`]) {
      const r = await pollActivity(gate(), namespace, queue, { token: a.token });
      assert.equal(r.code, grpc.status.PERMISSION_DENIED, `${queue}: ${r.details}`);
      assert.match(r.details, /PollActivityTaskQueue refused/);
    }
    // Polling its own queue in another namespace is refused too.
    const otherNs = await pollActivity(gate(), 'some-other-namespace', `agent.${a.id}`, { token: a.token });
    assert.equal(otherNs.code, grpc.status.PERMISSION_DENIED);

    // B receives a real task through the gate (a run for B schedules hash-verify on agent.B).
    const runId = await startRun(b.id);
    const polled = await pollActivity(gate(), namespace, `agent.${b.id}`, { token: b.token });
    assert.equal(polled.code, grpc.status.OK, polled.details);
    const bound = Buffer.from(polled.task!.taskToken);
    assert.ok(bound.length > 0, 'B received a task');
    assert.equal(polled.task!.workflowExecution!.workflowId, runId);
    const unbound = unbindToken(Buffer.from(stack.gateKey, 'utf8'), `agent.${b.id}`, bound);
    assert.ok(unbound.ok, 'the gate bound the token to agent.B');
    const raw = unbound.token; // the very token Temporal issued
    const forged = bindToken(randomBytes(32), `agent.${a.id}`, raw); // bound by someone without the key

    const calls = {
      RespondActivityTaskCompleted: (t: Uint8Array) =>
        ws.RespondActivityTaskCompletedRequest.encode({ namespace, taskToken: t, identity: 'A' }).finish(),
      RespondActivityTaskFailed: (t: Uint8Array) =>
        ws.RespondActivityTaskFailedRequest.encode({ namespace, taskToken: t, failure, identity: 'A' }).finish(),
      RespondActivityTaskCanceled: (t: Uint8Array) =>
        ws.RespondActivityTaskCanceledRequest.encode({ namespace, taskToken: t, identity: 'A' }).finish(),
      RecordActivityTaskHeartbeat: (t: Uint8Array) =>
        ws.RecordActivityTaskHeartbeatRequest.encode({ namespace, taskToken: t, identity: 'A' }).finish(),
    };
    for (const [method, encode] of Object.entries(calls)) {
      for (const [what, token] of [
        ['borrowed from B', bound],
        ['raw from Temporal', raw],
        ['forged binding', forged],
      ] as const) {
        const r = await rawCall(gate(), method, encode(token), { token: a.token });
        assert.equal(r.code, grpc.status.PERMISSION_DENIED, `${method} with a token ${what}: ${r.details}`);
        assert.match(r.details, new RegExp(`^${method} refused`));
      }
    }
    // …and none of it reached the task: B still holds it, heartbeats and fails it itself.
    const hb = await rawCall(gate(), 'RecordActivityTaskHeartbeat', calls.RecordActivityTaskHeartbeat(bound), {
      token: b.token,
    });
    assert.equal(hb.code, grpc.status.OK, `B's own heartbeat: ${hb.details}`);
    const failed = await rawCall(gate(), 'RespondActivityTaskFailed', calls.RespondActivityTaskFailed(bound), {
      token: b.token,
    });
    assert.equal(failed.code, grpc.status.OK, `B's own failure: ${failed.details}`);
    const again = await rawCall(gate(), 'RespondActivityTaskCompleted', calls.RespondActivityTaskCompleted(bound), {
      token: b.token,
    });
    assert.equal(
      again.code,
      grpc.status.NOT_FOUND,
      'the task is gone once answered (the gate forwards the real error)',
    );
  });

  it('a token bound to A but changed in any byte is refused, and the genuine one is accepted', async () => {
    const c = await register('gate-c');
    await startRun(c.id);
    const polled = await pollActivity(gate(), namespace, `agent.${c.id}`, { token: c.token });
    const bound = Buffer.from(polled.task!.taskToken);
    const heartbeat = (t: Uint8Array) =>
      rawCall(
        gate(),
        'RecordActivityTaskHeartbeat',
        ws.RecordActivityTaskHeartbeatRequest.encode({ namespace, taskToken: t }).finish(),
        {
          token: c.token,
        },
      );
    for (const at of [0, 5, Math.floor(bound.length / 2), bound.length - 20, bound.length - 1]) {
      const tampered = Buffer.from(bound);
      tampered[at] ^= 0x01;
      const r = await heartbeat(tampered);
      assert.equal(r.code, grpc.status.PERMISSION_DENIED, `byte ${at} changed: ${r.details}`);
    }
    assert.equal((await heartbeat(Buffer.concat([bound, Buffer.from([0x7a, 0])]))).code, grpc.status.PERMISSION_DENIED);
    assert.equal((await heartbeat(Buffer.alloc(0))).code, grpc.status.PERMISSION_DENIED);
    assert.equal((await heartbeat(bound)).code, grpc.status.OK);
  });

  it('Start, Signal, Update, Query, Terminate, Cancel, Describe, List, workflow polls and admin calls are refused for A', async () => {
    const a = await stack.startAgent('gate-victim', PLAN);
    const runId = await startRun(a.id, { mode: 'apply' });
    const waiting = await stack.waitForRun(runId, (r) => r.phase === 'awaiting-approval');
    const execution = { workflowId: runId };
    const input = { payloads: [{ metadata: { encoding: Buffer.from('json/plain') }, data: Buffer.from('{}') }] };
    const approve = {
      payloads: [
        {
          metadata: { encoding: Buffer.from('json/plain') },
          data: Buffer.from(JSON.stringify({ by: 'mallory', planHash: waiting.planHash })),
        },
      ],
    };
    const requests: Record<string, Uint8Array> = {
      StartWorkflowExecution: ws.StartWorkflowExecutionRequest.encode({
        namespace,
        workflowId: `patch-run.${a.id}.01JAAAAAAAAAAAAAAAAAAAAAAA`,
        workflowType: { name: 'patchRun' },
        taskQueue: { name: stack.controlQueue },
        input,
        requestId: randomBytes(8).toString('hex'),
      }).finish(),
      SignalWorkflowExecution: ws.SignalWorkflowExecutionRequest.encode({
        namespace,
        workflowExecution: execution,
        signalName: 'approve',
        input: approve,
      }).finish(),
      SignalWithStartWorkflowExecution: ws.SignalWithStartWorkflowExecutionRequest.encode({
        namespace,
        workflowId: runId,
        workflowType: { name: 'patchRun' },
        taskQueue: { name: stack.controlQueue },
        signalName: 'approve',
        signalInput: approve,
      }).finish(),
      UpdateWorkflowExecution: ws.UpdateWorkflowExecutionRequest.encode({
        namespace,
        workflowExecution: execution,
        request: { meta: { updateId: 'u1' }, input: { name: 'approve', args: approve } },
      }).finish(),
      QueryWorkflow: ws.QueryWorkflowRequest.encode({ namespace, execution, query: { queryType: 'status' } }).finish(),
      TerminateWorkflowExecution: ws.TerminateWorkflowExecutionRequest.encode({
        namespace,
        workflowExecution: execution,
        reason: 'mallory',
      }).finish(),
      RequestCancelWorkflowExecution: ws.RequestCancelWorkflowExecutionRequest.encode({
        namespace,
        workflowExecution: execution,
      }).finish(),
      DescribeWorkflowExecution: ws.DescribeWorkflowExecutionRequest.encode({ namespace, execution }).finish(),
      GetWorkflowExecutionHistory: ws.GetWorkflowExecutionHistoryRequest.encode({ namespace, execution }).finish(),
      ListWorkflowExecutions: ws.ListWorkflowExecutionsRequest.encode({ namespace }).finish(),
      PollWorkflowTaskQueue: ws.PollWorkflowTaskQueueRequest.encode({
        namespace,
        taskQueue: { name: stack.controlQueue },
      }).finish(),
      RespondActivityTaskCompletedById: ws.RespondActivityTaskCompletedByIdRequest.encode({
        namespace,
        workflowId: runId,
        activityId: '1',
      }).finish(),
      RegisterNamespace: ws.RegisterNamespaceRequest.encode({ namespace: 'mallory' }).finish(),
      UpdateNamespace: ws.UpdateNamespaceRequest.encode({ namespace }).finish(),
      DescribeNamespace: ws.DescribeNamespaceRequest.encode({ namespace: 'some-other-namespace' }).finish(),
      CreateSchedule: ws.CreateScheduleRequest.encode({ namespace, scheduleId: 'mallory' }).finish(),
    };
    for (const [method, req] of Object.entries(requests)) {
      const r = await rawCall(gate(), method, req, { token: a.token });
      assert.equal(r.code, grpc.status.PERMISSION_DENIED, `${method}: ${grpc.status[r.code]} ${r.details}`);
      assert.match(r.details, new RegExp(`^${method} refused by the patchnanny gate`));
    }
    // Services other than WorkflowService are not served at all.
    const op = await new Promise<grpc.ServiceError | null>((resolve) =>
      new grpc.Client(gate(), grpc.credentials.createInsecure()).makeUnaryRequest(
        '/temporal.api.operatorservice.v1.OperatorService/ListSearchAttributes',
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.alloc(0),
        (err) => resolve(err),
      ),
    );
    assert.equal(op?.code, grpc.status.UNIMPLEMENTED);
    // What A may call still works with the same token…
    const ns = await rawCall(gate(), 'DescribeNamespace', ws.DescribeNamespaceRequest.encode({ namespace }).finish(), {
      token: a.token,
    });
    assert.equal(ns.code, grpc.status.OK, ns.details);
    // …and nothing of the above happened: the run still waits for its approval, not approved by mallory.
    const still = await stack.waitForRun(runId, () => true);
    assert.equal(still.phase, 'awaiting-approval');
    assert.equal(still.outcome, null);
    const desc = await stack.temporal.workflow.getHandle(runId).describe();
    assert.equal(desc.status.name, 'RUNNING');
    const refusedLines = stack.gateLog.filter((l) => l.includes(`agent=${a.id} `));
    assert.equal(refusedLines.length, Object.keys(requests).length, 'one log line per refused call');
    assert.match(refusedLines[0], /refused StartWorkflowExecution agent=\S+ peer=\S+: not a call an agent makes/);
  });

  it('no token or an unknown token is UNAUTHENTICATED; a pending agent is PERMISSION_DENIED', async () => {
    const info = ws.GetSystemInfoRequest.encode({}).finish();
    const a = await register('gate-auth');
    assert.equal((await rawCall(gate(), 'GetSystemInfo', info, { token: a.token })).code, grpc.status.OK);
    const none = await rawCall(gate(), 'GetSystemInfo', info);
    assert.equal(none.code, grpc.status.UNAUTHENTICATED, none.details);
    const unknown = await rawCall(gate(), 'GetSystemInfo', info, {
      token: `pna_${randomBytes(32).toString('base64url')}`,
    });
    assert.equal(unknown.code, grpc.status.UNAUTHENTICATED, unknown.details);
    assert.match(unknown.details, /unknown agent token/);

    const p = await register('gate-pending');
    await stack.database.db('agents').where({ id: p.id }).update({ status: 'pending' });
    const polled = await pollActivity(gate(), namespace, `agent.${p.id}`, { token: p.token });
    assert.equal(polled.code, grpc.status.PERMISSION_DENIED, polled.details);
    assert.match(polled.details, new RegExp(`agent ${p.id} is pending acceptance`));
  });

  it('a real agent whose row is revoked has its poll cut and every later poll refused: it gets no more work', async () => {
    const agent = await stack.startAgent('gate-revoked-process', PLAN);
    await stack.waitFor('the agent to poll through the gate', () =>
      Promise.resolve((stack.gate.openCalls()[agent.id] ?? 0) > 0),
    );
    await stack.database.db('agents').where({ id: agent.id }).update({ status: 'revoked', revoked_at: new Date() });
    const refusals = () =>
      stack.gateLog.filter(
        (l) => l.startsWith(`refused PollActivityTaskQueue agent=${agent.id} `) && /is revoked/.test(l),
      ).length;
    // The open poll is cut, and the SDK's retries (it keeps the worker up) are refused too.
    await stack.waitFor('the cut poll and a refused retry', () => Promise.resolve(refusals() >= 2), 60_000);
    assert.equal(stack.gate.openCalls()[agent.id] ?? 0, 0, 'no call of the revoked agent is open upstream');
    // Nothing new reaches it: the API refuses runs on a revoked agent (a run already started ends
    // agent-revoked: test/api/enrolment), and the SDK worker's retries keep being refused here.
    const refused = await stack.http('POST', '/v1/runs', { body: { agentId: agent.id, mode: 'dry-run' } });
    assert.equal(refused.status, 409, JSON.stringify(refused.body));
    const seen = refusals();
    await stack.waitFor('another refused retry', () => Promise.resolve(refusals() > seen), 60_000);
    assert.equal(stack.gate.openCalls()[agent.id] ?? 0, 0, 'still no call of it open upstream');
    assert.deepEqual(fixture(agent).calls(), [], 'its script never ran');
  });

  it('revoking an agent cuts its open long poll within 2 s, and its next call is refused', async () => {
    const r = await register('gate-revoked');
    // The poll waits: nothing is scheduled on this queue.
    const polling = pollActivity(gate(), namespace, `agent.${r.id}`, { token: r.token, timeoutMs: 60_000 });
    await stack.waitFor('the poll to be open at the gate', () => Promise.resolve(stack.gate.openCalls()[r.id] === 1));
    await new Promise((res) => setTimeout(res, 200)); // and to have reached Temporal
    const revokedAt = Date.now();
    await stack.database.db('agents').where({ id: r.id }).update({ status: 'revoked', revoked_at: new Date() });
    const cut = await polling;
    const tookMs = Date.now() - revokedAt;
    assert.equal(cut.code, grpc.status.UNAUTHENTICATED, cut.details);
    assert.match(cut.details, /is revoked/);
    assert.ok(tookMs < 2000, `the poll was cut ${tookMs} ms after the revocation`);
    const next = await pollActivity(gate(), namespace, `agent.${r.id}`, { token: r.token });
    assert.equal(next.code, grpc.status.UNAUTHENTICATED);
  });
});
