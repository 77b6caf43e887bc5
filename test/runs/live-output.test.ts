import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { temporal } from '@temporalio/proto';
import { Stack, type TestAgent } from '../support/stack';
import { until, waitFor } from '../support/wait';

const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security'];

/** What the fixture prints to stderr for `lines-MODE` = "COUNT WIDTH PAUSE" (test/fixtures/scripts/apt-update.sh). */
const fixtureLines = (count: number, width: number) =>
  Array.from({ length: count }, (_, i) => `fixture line ${String(i + 1).padStart(6, '0')} ${'x'.repeat(width)}\n`).join(
    '',
  );
/** The fixture's own closing line on stderr, after the numbered ones. */
const CLOSING = 'fixture: dry-run with 1 packages\n';

const setLines = (agent: TestAgent, mode: string, spec: string) =>
  writeFileSync(path.join(agent.fixtureDir, `lines-${mode}`), `${spec}\n`);

/**
 * Issue 17, live output out of Temporal history: real Temporal, real PostgreSQL, real agent
 * processes streaming the fixture script's output to the API while it runs.
 */
describe('live output, out of Temporal history', { concurrency: true }, () => {
  const stack = new Stack();
  before(() => stack.start());
  after(() => stack.stop());

  const dryRun = async (agentId: string) => {
    const r = await stack.http('POST', '/v1/runs', { body: { agentId, mode: 'dry-run' } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return r.body.run.id as string;
  };
  /** The serialized size of a run's Temporal history, as the server stores and sends it. */
  const historyBytes = async (id: string) =>
    temporal.api.history.v1.History.encode(await stack.temporal.workflow.getHandle(id).fetchHistory()).finish().length;
  const planOutput = async (id: string) => {
    const r = await stack.http('GET', `/v1/runs/${id}/output?step=plan`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.output[0];
  };

  it("a run's history does not grow with its output: 1 MB and 1 KB of output give histories a few KB apart, and the API has the whole 1 MB, verified", async () => {
    const [big, small] = await Promise.all([
      stack.startAgent('output-1mb', PLAN),
      stack.startAgent('output-1kb', PLAN),
    ]);
    setLines(big, 'dry-run', '8700 100 0'); // 8,700 lines of 121 bytes: 1.05 MB
    setLines(small, 'dry-run', '8 100 0'); // 968 bytes
    const [bigId, smallId] = await Promise.all([dryRun(big.id), dryRun(small.id)]);
    const [bigRun, smallRun] = await Promise.all([
      stack.waitForOutcome(bigId, 90_000),
      stack.waitForOutcome(smallId, 90_000),
    ]);
    assert.equal(bigRun.outcome, 'completed', bigRun.failureReason);
    assert.equal(smallRun.outcome, 'completed', smallRun.failureReason);

    const [bigHistory, smallHistory] = await Promise.all([historyBytes(bigId), historyBytes(smallId)]);
    console.log(`# history bytes: 1 MB output ${bigHistory}, 1 KB output ${smallHistory}`);
    assert.ok(
      Math.abs(bigHistory - smallHistory) < 4096,
      `histories of ${bigHistory} and ${smallHistory} bytes: the output went through Temporal`,
    );

    const expected = fixtureLines(8700, 100) + CLOSING;
    assert.ok(expected.length > 1_000_000);
    const out = await planOutput(bigId);
    assert.equal(out.attempt, 1);
    assert.equal(out.done, true);
    assert.equal(out.verified, true, JSON.stringify({ ...out, streams: undefined }));
    assert.equal(out.streams.stderr.bytes, expected.length);
    assert.equal(out.streams.stderr.droppedBytes, 0);
    assert.ok(out.streams.stderr.text === expected, 'the stored stderr is the script’s, byte for byte');
    // stdout is the JSON document the agent also parsed into the plan.
    assert.equal(JSON.parse(out.streams.stdout.text).packages[0].name, 'openssl');
    assert.equal((await planOutput(smallId)).streams.stderr.text, fixtureLines(8, 100) + CLOSING);
  });

  it("a dry-run whose agent died mid-output is retried; the step shows the accepted attempt's output, complete, in order, once, verified", async () => {
    let agent = await stack.startAgent('output-retry', PLAN);
    setLines(agent, 'dry-run', '200 40 0.05'); // ~10 s of output, a line every 50 ms
    const id = await dryRun(agent.id);
    // Part of attempt 1 has reached the API while the script still prints.
    await waitFor('attempt 1 streamed some lines', async () => {
      const o = await planOutput(id);
      return o && (o.streams.stderr.text.match(/fixture line/g) ?? []).length >= 20;
    });
    setLines(agent, 'dry-run', '200 40 0');
    agent.process.kill('SIGKILL');
    await until('the agent is gone', () => agent.process.exitCode !== null || agent.process.signalCode !== null);
    agent = await stack.restartAgent(agent, 'output-retry');
    const run = await stack.waitForOutcome(id, 120_000);
    assert.equal(run.outcome, 'completed', run.failureReason);

    const out = await planOutput(id);
    assert.equal(out.attempt, 2, 'the result the workflow accepted came from attempt 2');
    assert.equal(out.verified, true);
    const lines = (out.streams.stderr.text as string).split('\n').filter((l) => l.startsWith('fixture line'));
    assert.deepEqual(
      lines.map((l) => Number(l.split(' ')[2])),
      Array.from({ length: 200 }, (_, i) => i + 1),
      'every line once, in order',
    );
    assert.equal(out.streams.stderr.text, fixtureLines(200, 40) + CLOSING);
    // Attempt 1's partial chunks are kept apart under their own attempt, never mixed in.
    const all = await stack.http('GET', `/v1/runs/${id}/output?step=plan&after=0`);
    const attempts = new Set(all.body.chunks.map((c: { attempt: number }) => c.attempt));
    assert.deepEqual([...attempts].sort(), [1, 2]);
    // The run record shows the same text (GET /v1/runs/:id).
    assert.match(run.output[0].stderr, /fixture line 000200/);
  });

  it('only the run’s own agent writes its output: a repeated chunk is a no-op, other bytes under its key 409, another agent 404, a person 403', async () => {
    const [own, other] = await Promise.all([
      stack.startAgent('output-owner', PLAN),
      stack.startAgent('output-other', PLAN),
    ]);
    writeFileSync(path.join(own.fixtureDir, 'delay-dry-run'), '600'); // the run stays planning
    const id = await dryRun(own.id);
    await until('the dry-run script is running', () => existsSync(path.join(own.fixtureDir, 'pid-dry-run')));
    const chunk = (data: string, extra: Record<string, unknown> = {}) => ({
      step: 'plan',
      attempt: 90,
      stream: 'stdout',
      seq: 0,
      data: Buffer.from(data).toString('base64'),
      ...extra,
    });
    const post = (token: string | null, body: unknown) => stack.http('POST', `/v1/runs/${id}/output`, { token, body });

    const first = await post(own.token, chunk('hello\n'));
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.deepEqual(first.body, { stored: true });
    const again = await post(own.token, chunk('hello\n'));
    assert.equal(again.status, 200);
    assert.deepEqual(again.body, { stored: false }, 'a repeated chunk is a no-op');
    const changed = await post(own.token, chunk('goodbye\n'));
    assert.equal(changed.status, 409);
    assert.equal(changed.body.error.field, 'seq');

    const foreign = await post(other.token, chunk('hello\n', { seq: 1 }));
    assert.equal(foreign.status, 404, 'another host is told the run does not exist');
    assert.equal((await post(null, chunk('x', { seq: 2 }))).status, 401);
    const person = await post('test-admin-token-0123456789', chunk('x', { seq: 3 }));
    assert.equal(person.status, 403);
    assert.match(person.body.error.message, /may not POST \/v1\/runs\/:id\/output/);
    const notRunning = await post(own.token, chunk('x', { step: 'apply' }));
    assert.equal(notRunning.status, 409, 'no apply runs while the run plans');
    const bad = await post(own.token, { ...chunk('x'), stream: 'stdin' });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.field, 'stream');

    // What is stored: the one chunk, once.
    const stored = await stack.http('GET', `/v1/runs/${id}/output?step=plan&after=0`);
    const mine = stored.body.chunks.filter((c: { attempt: number }) => c.attempt === 90);
    assert.deepEqual(
      mine.map((c: { seq: number; text: string }) => [c.seq, c.text]),
      [[0, 'hello\n']],
    );

    assert.equal((await stack.http('POST', `/v1/runs/${id}/cancel`)).status, 202);
    await stack.waitForOutcome(id, 90_000);
    const late = await post(own.token, chunk('late', { seq: 5 }));
    assert.equal(late.status, 409, 'an ended run takes no more output');
  });

  it('follow=1 streams a running step as server-sent events, ending with its verified record', async () => {
    const agent = await stack.startAgent('output-follow', PLAN);
    setLines(agent, 'dry-run', '40 10 0.05');
    const id = await dryRun(agent.id);
    const res = await fetch(`${stack.baseUrl}/v1/runs/${id}/output?step=plan&follow=1`, {
      headers: { authorization: 'Bearer test-admin-token-0123456789' },
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const text = await res.text(); // the server ends the stream once the step is recorded
    const events = text
      .split('\n\n')
      .filter((e) => e.includes('event: '))
      .map((e) => ({
        event: /event: (\S+)/.exec(e)![1],
        data: JSON.parse(/data: (.*)/.exec(e)![1]) as Record<string, any>,
      }));
    const chunks = events.filter((e) => e.event === 'chunk').map((e) => e.data);
    assert.ok(chunks.length > 1, `streamed in ${chunks.length} chunks`);
    const stderr = chunks
      .filter((c) => c.stream === 'stderr')
      .map((c) => c.text)
      .join('');
    assert.equal(stderr, fixtureLines(40, 10) + CLOSING);
    const end = events.at(-1)!;
    assert.equal(end.event, 'end');
    assert.equal(end.data.output[0].verified, true);
  });
});
