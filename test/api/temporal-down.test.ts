import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { createApp } from '../../api/app';
import { freePort } from '../../scripts/dev/temporal-server';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { ADMIN_TOKEN } from '../support/stack';

/** The API against a Temporal address where nothing answers (a cluster that went away). */
describe('the API when Temporal does not answer', () => {
  let database: TestDatabase;
  let server: Server;
  let temporal: Client;
  let base = '';
  before(async () => {
    database = await createTestDatabase();
    // Lazy: the real API connects at start; this one lost its server afterwards.
    temporal = new Client({ connection: Connection.lazy({ address: `127.0.0.1:${await freePort()}` }) });
    server = createApp({
      db: database.db,
      temporal,
      admins: [{ name: 'alice', token: ADMIN_TOKEN }],
      controlQueue: 'patch-control-nowhere',
      runDefaults: { approvalMs: 60_000, agentPickupMs: 30_000, scriptMs: 60_000 },
    }).listen(0, '127.0.0.1');
    await new Promise<void>((r) => server.once('listening', () => r()));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  after(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    await temporal.connection.close();
    await database.drop();
  });

  const http = async (method: string, url: string, token: string | null, body?: unknown) => {
    const res = await fetch(base + url, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as any };
  };

  it(
    'POST /v1/runs is a 503 with the error shape and leaves no run; /healthz says temporal: false',
    { timeout: 120_000 },
    async () => {
      const enrol = await http('POST', '/v1/enrolment-tokens', ADMIN_TOKEN, { preAccepted: true });
      assert.equal(enrol.status, 201, 'enrolment tokens need only the database');
      const reg = await http('POST', '/v1/agents', enrol.body.token, {
        hostname: 'down-host',
        os: { id: 'debian', versionId: '12', family: 'apt' },
      });
      assert.equal(reg.status, 201, 'registration needs only the database');
      // The SDK retries an unavailable server for ~20 s before giving up; both wait at once.
      const [run, health] = await Promise.all([
        http('POST', '/v1/runs', ADMIN_TOKEN, { agentId: reg.body.agent.id, mode: 'dry-run' }),
        http('GET', '/healthz', null),
      ]);
      assert.equal(run.status, 503, JSON.stringify(run.body));
      assert.equal(run.body.error.code, 'unavailable');
      assert.match(run.body.error.message, /could not start the run on Temporal/);
      assert.deepEqual(await database.db('patch_runs').select('id'), [], 'no run row is left behind');
      assert.equal(health.status, 503);
      assert.deepEqual(health.body, { ok: false, db: true, temporal: false });
    },
  );
});
