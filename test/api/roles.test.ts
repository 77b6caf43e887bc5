import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connectClient, TemporalEnv } from '../../runtime/temporal';
import { stopChild } from '../../scripts/dev/processes';
import { freePort } from '../../scripts/dev/temporal-server';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { ADMIN_TOKEN, DIST, FIXTURE_SCRIPTS } from '../support/stack';
import { renderLog } from '../../scripts/dev/log-lines';

/** dist/api/main.js as deployed, one real process per role, sharing one database and control queue. */
describe('PATCHNANNY_ROLE splits the control plane into an API process and a worker process', () => {
  const controlQueue = `patch-control-role-${randomBytes(4).toString('hex')}`;
  const children: ChildProcess[] = [];
  let database: TestDatabase;
  before(async () => {
    database = await createTestDatabase();
  });
  after(async () => {
    await Promise.all(children.map((c) => stopChild(c)));
    await database?.drop();
  });

  interface ApiProcess {
    child: ChildProcess;
    output: () => string;
    exited: Promise<number | null>;
  }
  const startMain = (env: Record<string, string>): ApiProcess => {
    const child = spawn(process.execPath, [path.join(DIST, 'api/main.js')], {
      env: {
        ...process.env,
        DATABASE_URL: database.url,
        PATCHNANNY_ADMIN_TOKENS: `alice:${ADMIN_TOKEN}`,
        PATCHNANNY_CONTROL_QUEUE: controlQueue,
        PATCHNANNY_SCRIPTS_DIR: FIXTURE_SCRIPTS,
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    return { child, output: () => out, exited };
  };
  /** Resolves when the process prints a line matching `pattern`; rejects if it exits first. */
  const waitForLine = (p: ApiProcess, pattern: RegExp, timeoutMs = 60_000) =>
    new Promise<RegExpExecArray>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no ${pattern} within ${timeoutMs} ms:\n${p.output()}`)),
        timeoutMs,
      );
      const check = () => {
        const m = pattern.exec(renderLog(p.output()));
        if (m) {
          clearTimeout(timer);
          resolve(m);
        }
      };
      p.child.stdout!.on('data', check);
      void p.exited.then((code) => reject(new Error(`exited ${code} before ${pattern}:\n${p.output()}`)));
      check();
    });
  const http = async (base: string, method: string, url: string, body?: unknown) => {
    const res = await fetch(base + url, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as any };
  };

  it(
    'api serves HTTP but polls no control queue, worker polls it but serves no HTTP, and together they run a patch run',
    { timeout: 180_000 },
    async () => {
      const temporal = await connectClient(TemporalEnv.parse(process.env));
      try {
        const apiOnly = startMain({ PATCHNANNY_ROLE: 'api', PORT: '0' });
        const [, port] = await waitForLine(apiOnly, /\[api\] listening on http:\/\/[^:]+:(\d+)/);
        const apiUrl = `http://127.0.0.1:${port}`;
        assert.equal((await fetch(`${apiUrl}/healthz`)).status, 200);

        const workerPort = await freePort();
        const workerOnly = startMain({ PATCHNANNY_ROLE: 'worker', PORT: String(workerPort) });
        await waitForLine(workerOnly, /control worker polling/);
        // The worker's poll reaches the server a moment after it says it polls: wait for that event.
        const pollers = async () => {
          const d = await temporal.workflowService.describeTaskQueue({
            namespace: temporal.options.namespace,
            taskQueue: { name: controlQueue },
            taskQueueType: 1 /* TASK_QUEUE_TYPE_WORKFLOW */,
          });
          return (d.pollers ?? []).map((p) => p.identity ?? '');
        };
        const identity = (child: ChildProcess) => `${child.pid}@${os.hostname()}`;
        const deadline = Date.now() + 60_000;
        while (!(await pollers()).includes(identity(workerOnly.child))) {
          assert.ok(Date.now() < deadline, `the worker-only process never polled ${controlQueue}`);
          await new Promise((r) => setTimeout(r, 200));
        }
        // The API process was up before the worker and had longer to poll, yet never did.
        assert.deepEqual(await pollers(), [identity(workerOnly.child)], 'only the worker process polls');
        assert.doesNotMatch(apiOnly.output(), /control-worker/);
        await assert.rejects(fetch(`http://127.0.0.1:${workerPort}/healthz`), 'the worker process serves no HTTP');
        assert.doesNotMatch(workerOnly.output(), /listening/);

        // Split, they still make one control plane: the API starts the run, the worker records its end.
        const enrol = await http(apiUrl, 'POST', '/v1/enrolment-tokens', { preAccepted: true });
        assert.equal(enrol.status, 201, JSON.stringify(enrol.body));
        const agent = await fetch(`${apiUrl}/v1/agents`, {
          method: 'POST',
          headers: { authorization: `Bearer ${enrol.body.token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ hostname: 'role-host', os: { id: 'debian', versionId: '12', family: 'apt' } }),
        }).then((r) => r.json() as Promise<any>);
        const started = await http(apiUrl, 'POST', '/v1/runs', {
          agentId: agent.agent.id,
          mode: 'dry-run',
          timeouts: { agentPickupMs: 2000 },
        });
        assert.equal(started.status, 202, JSON.stringify(started.body));
        const run = await temporal.workflow.getHandle(started.body.run.id).result();
        assert.equal(run.outcome, 'agent-unreachable', 'the control worker ran the workflow');
        const row = await http(apiUrl, 'GET', `/v1/runs/${started.body.run.id}`);
        assert.equal(row.body.run.outcome, 'agent-unreachable', "the worker's activities wrote the outcome");
      } finally {
        await temporal.connection.close();
      }
    },
  );

  it(
    'an unknown role is refused at start, naming the variable and the allowed values',
    { timeout: 60_000 },
    async () => {
      const bad = startMain({ PATCHNANNY_ROLE: 'both', PORT: '0' });
      assert.equal(await bad.exited, 1);
      assert.match(bad.output(), /PATCHNANNY_ROLE/);
      assert.match(renderLog(bad.output()), /"all"\|"api"\|"worker"/);
      assert.doesNotMatch(bad.output(), /listening|polling/);
    },
  );
});
