import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { appendAudit, auditHash, verifyAudit } from '../../db/audit';
import { DIST, Stack, TRIGGER_ONLY_WINDOW } from '../support/stack';

const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security'];

/**
 * The audit trail (issue 10): state changes made through the API and by runs are appended to a
 * hash chain, GET /v1/audit pages through it, and an edited, deleted or reordered row is named by
 * the verifier (the exported function and the `npm run audit:verify` CLI). Real API, PostgreSQL,
 * Temporal and agent. The tests run in order: the last ones tamper with the chain.
 */
describe('audit trail', () => {
  const stack = new Stack();
  before(() => stack.start());
  after(() => stack.stop());

  const audit = async (query = '') => {
    const r = await stack.http('GET', `/v1/audit${query}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body as { entries: any[]; next: string | null };
  };
  const summary = (entries: any[]) => entries.map((e) => [e.actor, e.kind, e.subject]);
  const cli = () => {
    const r = spawnSync(process.execPath, [path.join(DIST, 'scripts/dev/audit-verify.js')], {
      env: { ...process.env, DATABASE_URL: stack.database.url },
      encoding: 'utf8',
    });
    return { code: r.status, out: r.stdout + r.stderr };
  };

  let agentId = '';

  it('records a run requested, planned, approved and completed, with who did each', async () => {
    const agent = await stack.startAgent('audit-host', PLAN);
    agentId = agent.id;
    const started = await stack.http('POST', '/v1/runs', { body: { agentId, mode: 'apply', approval: 'required' } });
    assert.equal(started.status, 202, JSON.stringify(started.body));
    const id: string = started.body.run.id;
    const waiting = await stack.waitForRun(id, (r) => r.phase === 'awaiting-approval' || r.outcome !== null);
    const approved = await stack.approve(id, waiting.planHash);
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
    assert.equal((await stack.waitForOutcome(id)).outcome, 'completed');

    const { entries } = await audit(`?subject=${encodeURIComponent(id)}`);
    assert.deepEqual(summary(entries), [
      ['alice', 'run.requested', id],
      [`workflow:${id}`, 'run.plan-recorded', id],
      ['alice', 'run.approved', id],
      [`workflow:${id}`, 'run.outcome', id],
    ]);
    assert.equal(entries[1].detail.planHash, waiting.planHash);
    assert.equal(entries[2].detail.planHash, waiting.planHash);
    assert.equal(entries[3].detail.outcome, 'completed');
    const registered = await audit(`?kind=agent.registered&subject=${agentId}`);
    assert.equal(registered.entries.length, 1, 'the agent registration is on the trail');
  });

  it('records exceptions, windows and an agent revocation in order', async () => {
    const exc = await stack.http('POST', `/v1/agents/${agentId}/exceptions`, {
      body: { package: 'openssl', reason: 'pinned for audit test' },
    });
    assert.equal(exc.status, 201, JSON.stringify(exc.body));
    const excId: string = exc.body.exception.id;
    assert.equal((await stack.http('DELETE', `/v1/agents/${agentId}/exceptions/${excId}`)).status, 204);
    const win = await stack.createWindow({ ...TRIGGER_ONLY_WINDOW, targets: { agentIds: [agentId] } });
    assert.equal((await stack.http('DELETE', `/v1/windows/${win.id}`)).status, 204);
    assert.equal((await stack.http('DELETE', `/v1/agents/${agentId}`)).status, 200);

    const { entries } = await audit('?limit=1000');
    const tail = entries.slice(-5);
    assert.deepEqual(summary(tail), [
      ['alice', 'exception.created', excId],
      ['alice', 'exception.deleted', excId],
      ['alice', 'window.created', win.id],
      ['alice', 'window.deleted', win.id],
      ['alice', 'agent.revoked', agentId],
    ]);
    assert.equal(tail[0].detail.exception.package, 'openssl');
  });

  it('records people: a user created, given a token, changed, and the token revoked — never the secret', async () => {
    assert.equal((await stack.http('POST', '/v1/users', { body: { name: 'audited', role: 'viewer' } })).status, 201);
    const t = await stack.http('POST', '/v1/users/audited/tokens', { body: { note: 'laptop' } });
    assert.equal(t.status, 201, JSON.stringify(t.body));
    assert.equal((await stack.http('PATCH', '/v1/users/audited', { body: { role: 'approver' } })).status, 200);
    assert.equal((await stack.http('DELETE', `/v1/users/audited/tokens/${t.body.id}`)).status, 200);
    const { entries } = await audit('?limit=1000');
    // Other tests of this file run at the same time: look at the people entries only.
    const tail = entries.filter((e: any) => /^user/.test(e.kind)).slice(-4);
    assert.deepEqual(summary(tail), [
      ['alice', 'user.created', 'audited'],
      ['alice', 'user-token.created', t.body.id],
      ['alice', 'user.updated', 'audited'],
      ['alice', 'user-token.revoked', t.body.id],
    ]);
    assert.equal(tail[2].detail.role, 'approver');
    assert.ok(!JSON.stringify(entries).includes(t.body.token), 'the token itself is never in the trail');
  });

  it('a change whose audit entry cannot be written does not happen (entry and change commit together)', async () => {
    assert.equal((await stack.http('POST', '/v1/users', { body: { name: 'unaudited', role: 'viewer' } })).status, 201);
    const t = await stack.http('POST', '/v1/users/unaudited/tokens', { body: { note: 'ci' } });
    assert.equal(t.status, 201, JSON.stringify(t.body));
    const enrol = await stack.http('POST', '/v1/enrolment-tokens', { body: { note: 'unaudited' } });
    assert.equal(enrol.status, 201, JSON.stringify(enrol.body));
    const subjects = ['unaudited', t.body.id, enrol.body.enrolmentToken.id];
    // The audit table refuses exactly these subjects' entries, as a full disk or a lost lock would.
    const db = stack.database.db;
    assert.ok(
      subjects.every((x) => /^[\w.-]+$/.test(x)),
      'plain ids, safe to write into the function below',
    );
    const list = subjects.map((x) => `'${x}'`).join(',');
    await db.raw(`create function refuse_audit() returns trigger language plpgsql as $$
      begin if new.subject in (${list}) then raise exception 'audit refused'; end if; return new; end $$`);
    await db.raw('create trigger refuse_audit before insert on audit_log for each row execute function refuse_audit()');
    try {
      assert.equal((await stack.http('PATCH', '/v1/users/unaudited', { body: { role: 'admin' } })).status, 500);
      assert.equal((await stack.http('DELETE', `/v1/users/unaudited/tokens/${t.body.id}`)).status, 500);
      assert.equal((await stack.http('DELETE', `/v1/enrolment-tokens/${enrol.body.enrolmentToken.id}`)).status, 500);
    } finally {
      await db.raw('drop trigger refuse_audit on audit_log');
      await db.raw('drop function refuse_audit()');
    }
    const user = await stack.http('GET', '/v1/users/unaudited');
    assert.equal(user.body.user.role, 'viewer', 'the role change was rolled back with its entry');
    const token = await db('user_tokens').where({ id: t.body.id }).first('revoked_at');
    assert.equal(token.revoked_at, null, 'the token revocation was rolled back with its entry');
    const enrolRow = await db('enrolment_tokens').where({ id: enrol.body.enrolmentToken.id }).first('revoked_at');
    assert.equal(enrolRow.revoked_at, null, 'the enrolment token revocation was rolled back with its entry');
    // With the audit table writable again the same requests go through, each with its entry.
    assert.equal((await stack.http('PATCH', '/v1/users/unaudited', { body: { role: 'approver' } })).status, 200);
    const { entries } = await audit('?subject=unaudited');
    assert.deepEqual(
      entries.map((e: any) => e.kind),
      ['user.created', 'user.updated'],
    );
  });

  it('GET /v1/audit pages oldest first, each row carrying what re-verifies it', async () => {
    const all = (await audit('?limit=1000')).entries;
    const paged: any[] = [];
    let next: string | null = null;
    do {
      const page = await audit(`?limit=3${next ? `&after=${next}` : ''}`);
      assert.ok(page.entries.length <= 3);
      paged.push(...page.entries);
      next = page.next;
    } while (next);
    assert.deepEqual(paged, all);
    assert.deepEqual(
      all.map((e) => e.seq),
      all.map((_, i) => String(i + 1)),
    );
    // Anyone with the API's answer can recompute the chain.
    for (let i = 0; i < all.length; i++) {
      const e = all[i];
      assert.equal(e.prevHash, i === 0 ? '0'.repeat(64) : all[i - 1].hash);
      const row = { ...e, at: new Date(e.at), prev_hash: e.prevHash };
      assert.equal(auditHash(row), e.hash, `row ${e.seq} re-hashes`);
    }
    const bad = await stack.http('GET', '/v1/audit?after=abc');
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.field, 'after');
    const verified = await verifyAudit(stack.database.db);
    assert.deepEqual(verified, { ok: true, rows: all.length, head: all[all.length - 1].hash });
  });

  it('concurrent appends (20 parallel exception creations) still form one chain', async () => {
    const agent = await stack.registerOffline('audit-concurrent');
    const before = (await verifyAudit(stack.database.db)) as { rows: number };
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        stack.http('POST', `/v1/agents/${agent}/exceptions`, { body: { package: `pkg${i}`, reason: 'load' } }),
      ),
    );
    for (const r of results) assert.equal(r.status, 201, JSON.stringify(r.body));
    const verified = await verifyAudit(stack.database.db);
    assert.equal(verified.ok, true, JSON.stringify(verified));
    assert.ok(verified.rows >= before.rows + 20);
    const created = await audit(`?kind=exception.created&limit=1000`);
    assert.equal(created.entries.filter((e) => String(e.detail.exception.agentId) === agent).length, 20);
    const ok = cli();
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.out, new RegExp(`^ok: ${verified.rows} rows, head [0-9a-f]{64}$`, 'm'));
  });

  it('an append repeated with the same key (a retried control write) is kept once', async () => {
    const db = stack.database.db;
    const entry = { actor: 'workflow:x', kind: 'run.outcome', subject: 'x', dedupeKey: 'retry-test' };
    const first = await appendAudit(db, { ...entry, detail: { attempt: 1 } });
    const second = await appendAudit(db, { ...entry, detail: { attempt: 2 } });
    assert.ok(first);
    assert.equal(second, null);
    assert.deepEqual(
      (await db('audit_log').where({ dedupe_key: 'retry-test' })).map((r) => r.detail),
      [{ attempt: 1 }],
    );
    assert.equal((await verifyAudit(db)).ok, true);
  });

  it('an edited row is named, by the function and the CLI', async () => {
    const db = stack.database.db;
    const row = await db('audit_log').where({ seq: 3 }).first();
    await db('audit_log')
      .where({ seq: 3 })
      .update({ detail: db.raw(`detail || '{"tampered":true}'::jsonb`) });
    const result = await verifyAudit(db);
    assert.equal(result.ok, false);
    assert.deepEqual(result.ok ? null : [result.seq, result.problem], ['3', 'edited']);
    const out = cli();
    assert.equal(out.code, 1, out.out);
    assert.match(out.out, /row 3: .*edited/);
    await db('audit_log').where({ seq: 3 }).update({ detail: row.detail });
    assert.equal((await verifyAudit(db)).ok, true, 'restored');
  });

  it('a deleted row is named', async () => {
    const db = stack.database.db;
    const row = await db('audit_log').where({ seq: 5 }).first();
    await db('audit_log').where({ seq: 5 }).delete();
    const result = await verifyAudit(db);
    assert.equal(result.ok, false);
    assert.equal(result.ok ? null : result.problem, 'deleted');
    assert.match(result.ok ? '' : result.message, /seq 5 missing/);
    await db('audit_log').insert(row);
    assert.equal((await verifyAudit(db)).ok, true, 'restored');
  });

  it('two rows swapped (reordered) are named', async () => {
    const db = stack.database.db;
    const [a, b] = await db('audit_log').whereIn('seq', [7, 8]).orderBy('seq');
    const content = ({ seq: _seq, ...rest }: any) => rest;
    // Swap everything but the position, in one statement order that respects the unique key.
    await db.transaction(async (trx) => {
      await trx('audit_log')
        .where({ seq: 7 })
        .update({ ...content(b), dedupe_key: null });
      await trx('audit_log').where({ seq: 8 }).update(content(a));
      await trx('audit_log').where({ seq: 7 }).update({ dedupe_key: b.dedupe_key });
    });
    const result = await verifyAudit(db);
    assert.equal(result.ok, false);
    assert.deepEqual(result.ok ? null : [result.seq, result.problem], ['7', 'reordered']);
    const out = cli();
    assert.equal(out.code, 1, out.out);
    assert.match(out.out, /row 7: .*reordered/);
  });
});
