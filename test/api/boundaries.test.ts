import assert from 'node:assert/strict';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import type { ScriptExecution } from '../../contract';
import { claimRun, insertRunRows, recordDecision, recordOutcome, recordPlan } from '../../db/runs';
import { ADMIN_TOKEN, Stack } from '../support/stack';
import { TABLES } from '../support/db';

interface Sent {
  status: number;
  body: any;
}

describe('the API boundary refuses bad input with a 4xx in the error shape, before doing any work', () => {
  const stack = new Stack();
  let agentId: string;
  let runId: string;
  before(async () => {
    await stack.start();
    agentId = await stack.registerOffline('edge-01');
    const run = await stack.http('POST', '/v1/runs', { body: { agentId, mode: 'dry-run' } });
    assert.equal(run.status, 202, JSON.stringify(run.body));
    runId = run.body.run.id;
  });
  after(() => stack.stop());

  const counts = async () => {
    const out: Record<string, number> = {};
    for (const table of TABLES)
      out[table] = Number((await stack.database.db(table).count<{ count: string }[]>('* as count'))[0].count);
    return out;
  };

  /** Send raw bytes with the given headers; the response must carry the error shape. */
  async function send(
    method: string,
    urlPath: string,
    opts: { token?: string | null; headers?: Record<string, string>; body?: Uint8Array | string } = {},
  ): Promise<Sent> {
    const token = opts.token === undefined ? ADMIN_TOKEN : opts.token;
    const res = await fetch(stack.baseUrl + urlPath, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...opts.headers },
      body: opts.body,
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  }

  function assertRefused(r: Sent, status: number, code: string) {
    assert.equal(r.status, status, JSON.stringify(r.body));
    assert.equal(r.body?.error?.code, code, JSON.stringify(r.body));
    assert.equal(typeof r.body.error.message, 'string');
  }

  const json = { 'content-type': 'application/json' };

  it('a NUL in the runs cursor is a 400 naming the field, not a 500', async () => {
    assertRefused(await send('GET', '/v1/runs?before=%00'), 400, 'validation_failed');
    const r = await send('GET', '/v1/runs?before=not-a-run-id');
    assertRefused(r, 400, 'validation_failed');
    assert.equal(r.body.error.field, 'before');
  });

  const withNul: [string, string, string, unknown, string][] = [
    ['an exception reason', 'POST', '/v1/agents/:agent/exceptions', { package: 'nginx', reason: 'x\u0000y' }, 'reason'],
    [
      'an agent os id',
      'POST',
      '/v1/agents',
      { hostname: 'nul-01', os: { id: 'deb\u0000ian', family: 'apt' } },
      'os.id',
    ],
    [
      'an agent pretty name',
      'POST',
      '/v1/agents',
      { hostname: 'nul-02', os: { id: 'debian', prettyName: 'Debian\u0007', family: 'apt' } },
      'os.prettyName',
    ],
    ['a reject reason', 'POST', '/v1/runs/:run/reject', { reason: 'no\u0000pe' }, 'reason'],
    [
      'a window name',
      'POST',
      '/v1/windows',
      {
        name: 'night\u0000ly',
        targets: { agentIds: [':agent'] },
        recurrence: { everySeconds: 3600 },
        timezone: 'UTC',
        durationSeconds: 600,
        cutoffSeconds: 0,
        approval: 'dry-run-only',
        paused: true,
      },
      'name',
    ],
    ['a pause note', 'POST', '/v1/windows/win-00000000000000000000000000/pause', { note: 'a\u001bb' }, 'note'],
  ];
  for (const [what, method, url, body, field] of withNul) {
    it(`a control character in ${what} is a 400 naming ${field}, and nothing is written`, async () => {
      const fill = (s: string) => s.replaceAll(':agent', agentId).replaceAll(':run', runId);
      const token = url === '/v1/agents' ? stack.enrolToken : undefined;
      const before = await counts();
      const r = await send(method, fill(url), {
        token,
        headers: json,
        body: fill(JSON.stringify(body)),
      });
      assertRefused(r, 400, 'validation_failed');
      assert.equal(r.body.error.field, field);
      assert.deepEqual(await counts(), before);
    });
  }

  it('authenticates before reading the body: a bad gzip body without a token is a 401', async () => {
    for (const encoding of ['gzip', 'br', 'deflate']) {
      const r = await send('POST', '/v1/runs', {
        token: null,
        headers: { ...json, 'content-encoding': encoding },
        body: '{"agentId": "edge-01", "mode": "apply"}',
      });
      assertRefused(r, 401, 'unauthorized');
    }
    const big = await send('POST', '/v1/runs', {
      token: null,
      headers: json,
      body: JSON.stringify({ pad: 'x'.repeat(1_100_000) }),
    });
    assertRefused(big, 401, 'unauthorized');
  });

  it('checks the role before reading the body: an agent token posting a huge body is a 403', async () => {
    const agent = await stack.http('POST', '/v1/agents', {
      token: stack.enrolToken,
      body: { hostname: 'role-01', os: { id: 'debian', family: 'apt' } },
    });
    const r = await send('POST', '/v1/runs', {
      token: agent.body.token,
      headers: json,
      body: JSON.stringify({ pad: 'x'.repeat(1_100_000) }),
    });
    assertRefused(r, 403, 'forbidden');
  });

  it('a body that does not decompress is a 400; an unknown content-encoding is a 415', async () => {
    const before = await counts();
    for (const encoding of ['gzip', 'br', 'deflate']) {
      const r = await send('POST', '/v1/runs', {
        headers: { ...json, 'content-encoding': encoding },
        body: `{"agentId": "${agentId}", "mode": "dry-run"}`,
      });
      assertRefused(r, 400, 'validation_failed');
      assert.equal(r.body.error.field, 'body');
    }
    assertRefused(
      await send('POST', '/v1/runs', { headers: { ...json, 'content-encoding': 'zstd' }, body: '{}' }),
      415,
      'unsupported_media_type',
    );
    assert.deepEqual(await counts(), before);
  });

  it('after a large body that does not decompress, the same connection answers the next request', async () => {
    // fetch keeps the connection alive and sends the next request on it.
    for (const encoding of ['deflate', 'gzip', 'br']) {
      const r = await send('PATCH', `/v1/windows/win-00000000000000000000000000`, {
        headers: { ...json, 'content-encoding': encoding },
        body: JSON.stringify({ note: 'x'.repeat(1_100_000) }),
      });
      assertRefused(r, 400, 'validation_failed');
      const next = await send('GET', '/v1/runs?limit=1');
      assert.equal(next.status, 200);
    }
  });

  it('a compressed body that is valid is read like a plain one', async () => {
    const body = JSON.stringify({ reason: 'x' });
    for (const [encoding, bytes] of [
      ['gzip', gzipSync(body)],
      ['br', brotliCompressSync(body)],
    ] as const) {
      // The run is planning, not awaiting approval: the workflow refuses the reject (409), which
      // shows the body was read and validated.
      const r = await send('POST', `/v1/runs/${runId}/reject`, {
        headers: { ...json, 'content-encoding': encoding },
        body: bytes,
      });
      assertRefused(r, 409, 'conflict');
    }
  });

  it('a body over 1 MB is a 413, plain or as a decompression bomb', async () => {
    const pad = JSON.stringify({ agentId, mode: 'dry-run', pad: 'x'.repeat(1_100_000) });
    assertRefused(await send('POST', '/v1/runs', { headers: json, body: pad }), 413, 'payload_too_large');
    const bomb = gzipSync(JSON.stringify({ pad: ' '.repeat(50_000_000) }));
    assert.ok(bomb.length < 100_000);
    assertRefused(
      await send('POST', '/v1/runs', { headers: { ...json, 'content-encoding': 'gzip' }, body: bomb }),
      413,
      'payload_too_large',
    );
  });

  it('a body that is not JSON by its content type is a 415', async () => {
    const r = await send('POST', '/v1/runs', {
      headers: { 'content-type': 'text/plain' },
      body: JSON.stringify({ agentId, mode: 'dry-run' }),
    });
    assertRefused(r, 415, 'unsupported_media_type');
    // No body at all is still fine where the body is optional.
    const win = await send('POST', '/v1/windows/win-00000000000000000000000000/pause');
    assertRefused(win, 404, 'not_found');
  });

  it('an unknown method on a route is a 405 in the error shape, not a 501', async () => {
    for (const method of ['PUT', 'PROPFIND']) {
      const r = await send(method, '/v1/runs');
      assertRefused(r, 405, 'method_not_allowed');
    }
  });

  it('a control write stores script output and reasons with NUL bytes instead of failing for ever', async () => {
    const db = stack.database.db;
    const id = `patch-run.${agentId}.01JDQ7ZV8Y3M6W9S0X7K2P4N5R`;
    await insertRunRows(db, [{ runId: id, agentId, mode: 'apply', approval: 'required', requestedBy: 'alice' }]);
    // Control writes go only to a row a workflow execution has claimed (db/runs.ts claimRun).
    const owner = { runId: id, workflowRunId: 'a-workflow-execution' };
    const claim = {
      runId: id,
      agentId,
      mode: 'apply',
      approval: 'required',
      windowId: null,
      windowStart: null,
    } as const;
    assert.deepEqual(await claimRun(db, owner, claim), { claimed: true });
    const pkg = { name: 'lib\u0000c', arch: 'amd64', current: '1\u0000', candidate: '2', repo: 'main\u0000' };
    const execution = (mode: 'dry-run' | 'apply'): ScriptExecution => ({
      mode,
      argv: ['--exclude', 'a\u0000b'],
      exitCode: 0,
      stdout: 'out \u0000 put',
      stderr: '\u0000',
      result: {
        contract: 1,
        manager: 'apt\u0000',
        mode,
        packages: [{ ...pkg, action: 'upgrade' }],
        held: [],
        changed: [{ name: pkg.name, arch: 'amd64', from: '1\u0000', to: '2\u0000' }],
        reboot_required: true,
        reboot_reason: 'kernel\u0000',
        manager_exit_code: 0,
        error: null,
      },
      planHash: 'a'.repeat(64),
      durationMs: 5,
    });
    await recordPlan(db, owner, { step: 'plan', execution: execution('dry-run'), phase: 'awaiting-approval' });
    await recordDecision(db, owner, {
      kind: 'reject',
      by: 'x\u0000',
      reason: 'nul \u0000 here \\u0000',
      planHash: null,
      phase: 'reporting',
    });
    await recordOutcome(db, owner, {
      outcome: 'failed',
      failureReason: 'agent said \u0000',
      execution: execution('apply'),
      overran: false,
    });
    const run = await stack.http('GET', `/v1/runs/${id}`);
    assert.equal(run.status, 200);
    assert.equal(run.body.run.failureReason, 'agent said \uFFFD');
    assert.equal(run.body.run.rejectedBy, 'x\uFFFD');
    assert.equal(run.body.run.plan[0].name, 'lib\uFFFDc');
    assert.deepEqual(run.body.run.output[0].argv, ['--exclude', 'a\uFFFDb']);
    // An escaped backslash before "u0000" is text, not a NUL, and is kept as it was.
    assert.deepEqual(
      run.body.run.events.find((e: { kind: string }) => e.kind === 'rejected').detail.reason,
      'nul \uFFFD here \\u0000',
    );
  });

  describe('issue 12 routes: hostile rollouts, hooks, baselines, labels and selectors change nothing', () => {
    const BIG = 'x'.repeat(900_000); // under the 1 MB body limit: the field's own bound must refuse it
    const rollout = (over: Record<string, unknown>) => ({
      targets: { agentIds: [':agent'] },
      mode: 'dry-run',
      approval: 'auto',
      ...over,
    });
    const baseline = (over: Record<string, unknown>) => ({
      name: 'hostile',
      selector: 'role=web',
      rules: { patterns: ['tzdata'] },
      ...over,
    });
    const labels = (l: unknown) => ({ labels: l });
    let baselineId = '';
    /** The rows an accepted hostile request could change without adding a row. */
    const snapshot = async () => ({
      counts: await counts(),
      baselines: await stack.database.db('patch_baselines').orderBy('id'),
      agents: await stack.database.db('agents').orderBy('id').select('id', 'labels'),
      hooks: await stack.database.db('hooks').orderBy('name'),
    });
    before(async () => {
      const r = await stack.http('POST', '/v1/baselines', { body: baseline({ name: 'kept' }) });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      baselineId = r.body.baseline.id;
    });

    // [what, method, url, body (undefined: none), the field the 400 names]
    const hostile: [string, string, string, unknown, string][] = [
      ['a rollout name with a NUL', 'POST', '/v1/rollouts', rollout({ name: 'we\u0000b' }), 'name'],
      ['a 900 kB rollout name', 'POST', '/v1/rollouts', rollout({ name: BIG }), 'name'],
      [
        'a NUL in a rollout selector',
        'POST',
        '/v1/rollouts',
        rollout({ targets: { selector: 'role=we\u0000b' } }),
        'targets.selector',
      ],
      [
        'a 900 kB rollout selector',
        'POST',
        '/v1/rollouts',
        rollout({ targets: { selector: `role=${BIG}` } }),
        'targets.selector',
      ],
      [
        'a rollout selector that is a list',
        'POST',
        '/v1/rollouts',
        rollout({ targets: { selector: ['role=web'] } }),
        'targets.selector',
      ],
      ['an empty rollout selector', 'POST', '/v1/rollouts', rollout({ targets: { selector: '' } }), 'targets.selector'],
      [
        'a hook path out of the hooks',
        'POST',
        '/v1/rollouts',
        rollout({ hooks: { pre: { script: '../../etc/passwd' } } }),
        'hooks.pre.script',
      ],
      [
        'a NUL in a hook name',
        'POST',
        '/v1/rollouts',
        rollout({ hooks: { pre: { script: 'a\u0000.sh' } } }),
        'hooks.pre.script',
      ],
      [
        'a hook with a shell command',
        'POST',
        '/v1/rollouts',
        rollout({ hooks: { post: { script: 'a.sh', shell: 'rm -rf /' } } }),
        'hooks.post',
      ],
      [
        'a hook timeout of a billion seconds',
        'POST',
        '/v1/rollouts',
        rollout({ hooks: { pre: { script: 'a.sh', timeoutSeconds: 1e9 } } }),
        'hooks.pre.timeoutSeconds',
      ],
      [
        'a failure budget beyond an integer',
        'POST',
        '/v1/rollouts',
        rollout({ maxFailures: { count: 3_000_000_000 } }),
        'maxFailures',
      ],
      ['a NUL in a hook name (URL)', 'PUT', '/v1/hooks/a%00.sh', { content: '#!/bin/sh\n' }, 'name'],
      ['a hook name that climbs out', 'PUT', '/v1/hooks/..%2F..%2Fetc%2Fcron.sh', { content: '#!/bin/sh\n' }, 'name'],
      ['a NUL in hook content', 'PUT', '/v1/hooks/drain.sh', { content: '#!/bin/sh\n\u0000' }, 'content'],
      ['900 kB of hook content', 'PUT', '/v1/hooks/drain.sh', { content: BIG }, 'content'],
      ['hook content that is not text', 'PUT', '/v1/hooks/drain.sh', { content: { sh: 'x' } }, 'content'],
      [
        'a hook signature that is not one',
        'PUT',
        '/v1/hooks/drain.sh',
        { content: '#!/bin/sh\n', signatures: ['x'] },
        'signatures.0',
      ],
      ['a baseline name with a NUL', 'POST', '/v1/baselines', baseline({ name: 'a\u0000b' }), 'name'],
      ['a 900 kB baseline name', 'POST', '/v1/baselines', baseline({ name: BIG }), 'name'],
      ['a NUL in a baseline selector', 'POST', '/v1/baselines', baseline({ selector: 'role\u0000=web' }), 'selector'],
      ['a 900 kB baseline selector', 'POST', '/v1/baselines', baseline({ selector: BIG }), 'selector'],
      ['an empty baseline selector', 'POST', '/v1/baselines', baseline({ selector: ' , ' }), 'selector'],
      [
        'a NUL in a baseline pattern',
        'POST',
        '/v1/baselines',
        baseline({ rules: { patterns: ['ok', 'lib\u0000c'] } }),
        'rules.patterns.1',
      ],
      [
        'a pattern that reads as a flag',
        'POST',
        '/v1/baselines',
        baseline({ rules: { patterns: ['--force'] } }),
        'rules.patterns.0',
      ],
      ['a 900 kB pattern', 'POST', '/v1/baselines', baseline({ rules: { patterns: [BIG] } }), 'rules.patterns.0'],
      ['a baseline note with a NUL', 'POST', '/v1/baselines', baseline({ note: 'ok\u0000' }), 'note'],
      ['a 900 kB baseline note', 'POST', '/v1/baselines', baseline({ note: BIG }), 'note'],
      ['a NUL in a replaced baseline name', 'PUT', '/v1/baselines/:baseline', baseline({ name: 'kept\u0000' }), 'name'],
      [
        'a NUL in a replaced baseline note',
        'PUT',
        '/v1/baselines/:baseline',
        baseline({ name: 'kept', note: '\u0000' }),
        'note',
      ],
      [
        'a replaced baseline selector of 900 kB',
        'PUT',
        '/v1/baselines/:baseline',
        baseline({ name: 'kept', selector: BIG }),
        'selector',
      ],
      ['a NUL in a baseline id', 'PUT', '/v1/baselines/bl-%00', baseline({}), 'id'],
      ['a NUL in a label key', 'PUT', '/v1/agents/:agent/labels', labels({ 'ro\u0000le': 'web' }), 'labels'],
      ['a NUL in a label value', 'PUT', '/v1/agents/:agent/labels', labels({ role: 'we\u0000b' }), 'labels.role'],
      ['a 900 kB label key', 'PUT', '/v1/agents/:agent/labels', labels({ [BIG]: 'x' }), 'labels'],
      ['a 900 kB label value', 'PUT', '/v1/agents/:agent/labels', labels({ role: BIG }), 'labels.role'],
      [
        'a __proto__ label (the JSON parser refuses the body)',
        'PUT',
        '/v1/agents/:agent/labels',
        labels(JSON.parse('{"__proto__": {"role": "admin"}}')),
        'body',
      ],
      ['labels that are a list', 'PUT', '/v1/agents/:agent/labels', labels(['role=web']), 'labels'],
      ['a label value that is a number', 'PUT', '/v1/agents/:agent/labels', labels({ role: 7 }), 'labels.role'],
      [
        '33 labels',
        'PUT',
        '/v1/agents/:agent/labels',
        labels(Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v']))),
        'labels',
      ],
      ['a NUL in a list selector', 'GET', '/v1/agents?selector=role%3Dwe%00b', undefined, 'selector'],
      ['a 5 kB list selector', 'GET', `/v1/agents?selector=${'a'.repeat(5000)}`, undefined, 'selector'],
      ['two list selectors', 'GET', '/v1/agents?selector=role%3Dweb&selector=env%3Dprod', undefined, 'selector'],
      ['an empty list selector', 'GET', '/v1/agents?selector=', undefined, 'selector'],
    ];
    for (const [what, method, url, body, field] of hostile) {
      it(`${what} is a 400 naming ${field}, and nothing changes`, async () => {
        const fill = (t: string) => t.replaceAll(':agent', agentId).replaceAll(':baseline', baselineId);
        const before = await snapshot();
        // JSON.stringify keeps a __proto__ own property as a key, as an attacker's raw JSON would.
        const r = await send(
          method,
          fill(url),
          body === undefined ? {} : { headers: json, body: fill(JSON.stringify(body)) },
        );
        assertRefused(r, 400, 'validation_failed');
        assert.ok(
          r.body.error.field === field || r.body.error.field?.startsWith(`${field}.`),
          `field ${r.body.error.field}`,
        );
        assert.deepEqual(await snapshot(), before);
      });
    }
  });

  it('the 1,000th registration of one host name gets an id, in one query, not a 500', async () => {
    const hostname = 'busy.example.org';
    // 998 earlier registrations of this name, written directly (the API would take minutes).
    const rows = Array.from({ length: 998 }, (_, i) => ({
      id: i === 0 ? 'busy-example-org' : `busy-example-org-${i + 1}`,
      hostname,
      os_id: 'debian',
      family: 'apt',
      package_manager: 'apt',
      token_hash: `hash-${i}`,
    }));
    await stack.database.db('agents').insert(rows);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await stack.http('POST', '/v1/agents', {
        token: stack.enrolToken,
        body: { hostname, os: { id: 'debian', family: 'apt' } },
      });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      ids.push(r.body.agent.id);
    }
    assert.deepEqual(ids, ['busy-example-org-999', 'busy-example-org-1000', 'busy-example-org-1001']);
  });
});
