import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Stack } from '../support/stack';

describe('the API refuses what it must refuse, with a clear error', { concurrency: true }, () => {
  const stack = new Stack();
  let agentId: string;
  let agentToken: string;
  before(async () => {
    await stack.start();
    const r = await stack.http('POST', '/v1/agents', {
      token: stack.enrolToken,
      body: { hostname: 'web-01.example.org', os: { id: 'debian', versionId: '12', family: 'apt' } },
    });
    assert.equal(r.status, 201);
    agentId = r.body.agent.id;
    agentToken = r.body.token;
  });
  after(() => stack.stop());

  it('registers an agent with a readable id, its task queue and a one-time token stored only hashed', async () => {
    assert.equal(agentId, 'web-01-example-org');
    assert.match(agentToken, /^pna_/);
    // Stored only as its SHA-256: no column of the row holds the token itself.
    const row = await stack.database.db('agents').where({ id: agentId }).first();
    assert.equal(row.token_hash, createHash('sha256').update(agentToken).digest('hex'));
    assert.ok(!JSON.stringify(row).includes(agentToken), 'the token itself is not stored');
    // Shown once: no read gives it back, to an admin or to the agent itself.
    for (const [url, token] of [
      ['/v1/agents', undefined],
      [`/v1/agents/${agentId}`, undefined],
      [`/v1/agents/${agentId}`, agentToken],
    ] as const) {
      const read = await stack.http('GET', url, { token });
      assert.equal(read.status, 200);
      assert.ok(!JSON.stringify(read.body).includes(agentToken), `GET ${url} does not return the token`);
      assert.ok(!JSON.stringify(read.body).includes(row.token_hash), `GET ${url} does not return its hash`);
    }
    const again = await stack.http('POST', '/v1/agents', {
      token: stack.enrolToken,
      body: { hostname: 'web-01.example.org', os: { id: 'debian', family: 'apt' } },
    });
    assert.equal(
      again.body.agent.id,
      'web-01-example-org-2',
      'a second registration never takes over the first identity',
    );
    const listed = await stack.http('GET', '/v1/agents');
    assert.deepEqual(listed.body.agents.map((a: any) => a.taskQueue).sort(), [
      'agent.web-01-example-org',
      'agent.web-01-example-org-2',
    ]);
  });

  it('no token is 401, an unknown token is 401', async () => {
    for (const token of [null, 'nope']) {
      const r = await stack.http('GET', '/v1/runs', { token });
      assert.equal(r.status, 401);
      assert.equal(r.body.error.code, 'unauthorized');
    }
  });

  it('an agent token can read scripts and itself, but cannot start, approve or list runs or read other agents (403)', async () => {
    assert.equal((await stack.http('GET', '/v1/scripts/apt-update.sh', { token: agentToken })).status, 200);
    assert.equal((await stack.http('GET', `/v1/agents/${agentId}`, { token: agentToken })).status, 200);
    const forbidden: [string, string, unknown][] = [
      ['POST', '/v1/runs', { agentId, mode: 'apply' }],
      ['GET', '/v1/runs', undefined],
      ['POST', `/v1/runs/patch-run.${agentId}.01JDQ7ZV8Y3M6W9S0X7K2P4N5R/approve`, { planHash: 'a'.repeat(64) }],
      ['GET', '/v1/agents', undefined],
      ['GET', '/v1/agents/web-01-example-org-2', undefined],
    ];
    for (const [method, url, body] of forbidden) {
      const r = await stack.http(method, url, { token: agentToken, body });
      assert.equal(r.status, 403, `${method} ${url}`);
      assert.equal(r.body.error.code, 'forbidden');
    }
    assert.equal(
      (await stack.http('GET', '/v1/runs', { token: stack.enrolToken })).status,
      403,
      'the enrolment token only registers',
    );
  });

  it('serves a script with the sha256 of exactly its content', async () => {
    const r = await stack.http('GET', '/v1/scripts/apt-update.sh', { token: agentToken });
    assert.equal(r.body.script.sha256, createHash('sha256').update(r.body.script.content).digest('hex'));
    const list = await stack.http('GET', '/v1/scripts');
    assert.deepEqual(
      list.body.scripts.map((s: any) => s.name),
      ['apt-update.sh'],
    );
  });

  const bad: [string, string, string, unknown, string][] = [
    ['an unknown mode', 'POST', '/v1/runs', { agentId: 'web-01-example-org', mode: 'yolo' }, 'mode'],
    ['a missing agent id', 'POST', '/v1/runs', { mode: 'apply' }, 'agentId'],
    ['an unknown agent', 'POST', '/v1/runs', { agentId: 'nobody', mode: 'apply' }, 'agentId'],
    [
      'an unknown approval policy',
      'POST',
      '/v1/runs',
      { agentId: 'web-01-example-org', mode: 'apply', approval: 'maybe' },
      'approval',
    ],
    [
      'a negative timeout',
      'POST',
      '/v1/runs',
      { agentId: 'web-01-example-org', mode: 'apply', timeouts: { approvalMs: -1 } },
      'timeouts.approvalMs',
    ],
    [
      'a plan hash that is not a hash',
      'POST',
      '/v1/runs/patch-run.web-01-example-org.01JDQ7ZV8Y3M6W9S0X7K2P4N5R/approve',
      { planHash: 'abc' },
      'planHash',
    ],
    [
      'a reject without reason',
      'POST',
      '/v1/runs/patch-run.web-01-example-org.01JDQ7ZV8Y3M6W9S0X7K2P4N5R/reject',
      {},
      'reason',
    ],
    [
      'a hostname with shell characters',
      'POST',
      '/v1/agents',
      { hostname: 'a;rm -rf /', os: { id: 'debian', family: 'apt' } },
      'hostname',
    ],
    ['an unknown family', 'POST', '/v1/agents', { hostname: 'h1', os: { id: 'debian', family: 'brew' } }, 'os.family'],
    ['an unknown phase filter', 'GET', '/v1/runs?phase=bogus', undefined, 'phase'],
  ];
  for (const [what, method, url, body, field] of bad) {
    it(`${what} is a 400 naming the field ${field}, and nothing is created`, async () => {
      // What a wrongly accepted request would have created: an agent with that host name, or a
      // run (no other test in this file starts one).
      const table = url.startsWith('/v1/agents') ? 'agents' : 'patch_runs';
      const count = async () => {
        const q = stack.database.db(table);
        if (table === 'agents') q.where({ hostname: (body as { hostname: string }).hostname });
        return Number((await q.count<{ count: string }[]>('* as count'))[0].count);
      };
      const before = await count();
      const r = await stack.http(method, url, { body });
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal(r.body.error.code, 'validation_failed');
      assert.equal(r.body.error.field, field);
      assert.ok(r.body.error.message.length > 0);
      assert.equal(await count(), before, `no row in ${table}`);
    });
  }

  it('a body that is not JSON is a 400', async () => {
    const r = await stack.http('POST', '/v1/runs', { raw: '{"agentId": ' });
    assert.equal(r.status, 400);
    assert.equal(r.body.error.code, 'validation_failed');
  });

  it('an unknown run is 404', async () => {
    const r = await stack.http('GET', '/v1/runs/patch-run.web-01-example-org.01JDQ7ZV8Y3M6W9S0X7K2P4N5R');
    assert.equal(r.status, 404);
    assert.equal(r.body.error.code, 'not_found');
  });

  it('healthz reports the database and Temporal', async () => {
    const r = await stack.http('GET', '/healthz', { token: null });
    assert.deepEqual(r.body, { ok: true, db: true, temporal: true });
  });
});
