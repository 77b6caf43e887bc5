/**
 * Who may call what, generated from the one table (api/roles.ts ROUTE_ROLES): every route ×
 * every kind of principal, with real users and tokens made through the API, against a real
 * stack. Then what a table cannot show: a revoked token or a disabled user is refused at once,
 * a requester cancels only their own runs, and four-eyes keeps a run's requester from approving it.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROUTE_ROLES, type Role, type RouteKey } from '../../api/roles';
import { insertRunRows } from '../../db/runs';
import { approveSignal, approveUpdate } from '../../workflows/messages';
import { documentedStatuses } from '../support/openapi';
import { ADMIN_TOKEN, DIST, Stack, TRIGGER_ONLY_WINDOW } from '../support/stack';

const PLAN = ['openssl amd64 3.0.15-1 3.0.16-1 bookworm-security'];
const ULID = '01jdzzzzzzzzzzzzzzzzzzzzzz';
const NO_RUN = 'patch-run.nobody.01JDZZZZZZZZZZZZZZZZZZZZZZ';

/** The principals of the matrix; `roles` is what the table must list for a call to be allowed. */
type Principal = 'admin (bootstrap)' | 'admin' | 'approver' | 'requester' | 'viewer' | 'agent' | 'enrol' | 'none';
const PRINCIPALS: Principal[] = [
  'admin (bootstrap)',
  'admin',
  'approver',
  'requester',
  'viewer',
  'agent',
  'enrol',
  'none',
];
const roleOf = (p: Principal): Role | null => (p === 'none' ? null : p === 'admin (bootstrap)' ? 'admin' : p);

describe('route × role, from the one table', () => {
  const stack = new Stack();
  const tokens = {} as Record<Principal, string | null>;
  let agentId = '';

  /** A user with a token of their own, made through the API as the bootstrap admin. */
  const user = async (name: string, role: string): Promise<string> => {
    const u = await stack.http('POST', '/v1/users', { body: { name, role, displayName: `${name} test` } });
    assert.equal(u.status, 201, JSON.stringify(u.body));
    const t = await stack.http('POST', `/v1/users/${name}/tokens`, { body: { note: 'test' } });
    assert.equal(t.status, 201, JSON.stringify(t.body));
    assert.match(t.body.token, /^pnu_/);
    return t.body.token as string;
  };

  /** An approve body signed by `by`'s test key, as the CLI makes it. */
  const signed = (runId: string, planHash: string, by: string) => {
    const { at, keyId, signature } = stack.signApproval(runId, planHash, by);
    return { planHash, at, keyId, signature };
  };

  before(async () => {
    await stack.start();
    tokens['admin (bootstrap)'] = ADMIN_TOKEN; // PATCHNANNY_ADMIN_TOKENS alice:…
    tokens.admin = await user('adam', 'admin');
    tokens.approver = await user('paula', 'approver');
    tokens.requester = await user('rita', 'requester');
    tokens.viewer = await user('vic', 'viewer');
    // Approvals are signed (issue 10): adam and paula approve with keys registered before any run.
    await stack.registerTestApproverKeys(['adam', 'paula']);
    tokens.enrol = stack.enrolToken;
    tokens.none = null;
    const reg = await stack.http('POST', '/v1/agents', {
      token: stack.enrolToken,
      body: { hostname: 'matrix-01', os: { id: 'debian', versionId: '12', family: 'apt' } },
    });
    assert.equal(reg.status, 201, JSON.stringify(reg.body));
    agentId = reg.body.agent.id;
    tokens.agent = reg.body.token;
  });
  after(() => stack.stop());

  /**
   * A concrete URL for a route: ids that do not exist (so an allowed call that would change
   * something finds nothing: 404 or 400, never a write that disturbs the next call), except an
   * agent reading itself.
   */
  const urlFor = (key: RouteKey, who: Principal) => {
    const route = key.slice(key.indexOf(' ') + 1);
    return route
      .replace(':agentId', 'no-such-agent')
      .replace(/^\/v1\/agents\/:id/, `/v1/agents/${who === 'agent' ? agentId : 'no-such-agent'}`)
      .replace(/^\/v1\/runs\/:id/, `/v1/runs/${NO_RUN}`)
      .replace(':planHash', 'a'.repeat(64))
      .replace(/^\/v1\/windows\/:id/, `/v1/windows/win-${ULID}`)
      .replace(/^\/v1\/rollouts\/:id/, `/v1/rollouts/rol-${ULID}`)
      .replace(/^\/v1\/webhooks\/:id/, `/v1/webhooks/whk-${ULID}`)
      .replace(/^\/v1\/enrolment-tokens\/:id/, `/v1/enrolment-tokens/enr-${ULID}`)
      .replace('/exceptions/:id', `/exceptions/exc-${ULID}`)
      .replace(':name/tokens/:id', `nobody/tokens/utk-${ULID}`)
      .replace('/v1/users/:name', '/v1/users/nobody')
      .replace(':name', 'apt-update.sh');
  };

  const keys = Object.keys(ROUTE_ROLES) as RouteKey[];

  it('every route answers every principal as the table says: allowed, 403, or 401 without a token', async () => {
    const wrong: string[] = [];
    const documented = documentedStatuses();
    let calls = 0;
    for (const key of keys) {
      const method = key.slice(0, key.indexOf(' '));
      for (const who of PRINCIPALS) {
        const role = roleOf(who);
        const allowed = role !== null && (ROUTE_ROLES[key] as readonly Role[]).includes(role);
        const url = urlFor(key, who);
        const r = await stack.http(method, url, {
          token: tokens[who],
          body: method === 'POST' || method === 'PATCH' ? {} : undefined,
        });
        calls++;
        const expected = role === null ? '401' : allowed ? 'allowed' : '403';
        const got = r.status === 401 || r.status === 403 ? String(r.status) : 'allowed';
        // Allowed means the route ran: not a 405 or "no route" 404 from a verb that does not match the key.
        const reached = r.status !== 405 && !/^no route /.test(r.body?.error?.message ?? '');
        if (got !== expected || r.status >= 500 || !reached)
          wrong.push(`${key} as ${who}: expected ${expected}, got ${r.status} ${JSON.stringify(r.body)}`);
        if (r.status === 403) assert.equal(r.body.error.code, 'forbidden');
        if (!documented.get(key)?.includes(r.status))
          wrong.push(`${key} as ${who}: ${r.status} is not in the OpenAPI document (api/openapi/routes.ts)`);
      }
    }
    assert.deepEqual(wrong, [], `${wrong.length} of ${calls} calls disagree with api/roles.ts`);
    assert.equal(calls, keys.length * PRINCIPALS.length);
  });

  it('every route in the routers is registered through the table (no verb call without at())', () => {
    const api = path.join(DIST, '../api');
    const offenders: string[] = [];
    for (const dir of readdirSync(api, { withFileTypes: true }).filter((d) => d.isDirectory())) {
      const file = path.join(api, dir.name, 'router.ts');
      if (!existsSync(file)) continue;
      for (const m of readFileSync(file, 'utf8').matchAll(
        /router\.(get|post|put|patch|delete|all|use)\((?!\s*\.\.\.at\()/g,
      ))
        offenders.push(`api/${dir.name}/router.ts: ${m[0]}`);
    }
    assert.deepEqual(offenders, []);
  });

  it("the README's API table lists exactly the roles of the code's table", () => {
    const readme = readFileSync(path.join(DIST, '../README.md'), 'utf8');
    const section = /<!-- route-roles -->([\s\S]*?)<!-- \/route-roles -->/.exec(readme);
    assert.ok(section, 'README has a <!-- route-roles --> table');
    const documented: Record<string, string[]> = {};
    for (const m of section[1].matchAll(/^\| `([A-Z]+ \/[^`]*)` \| ([^|]*) \|/gm))
      documented[m[1]] = m[2]
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
    const names: Record<Role, string> = {
      admin: 'admin',
      approver: 'approver',
      requester: 'requester',
      viewer: 'viewer',
      agent: 'agent',
      'pending-agent': 'pending agent',
      enrol: 'enrolment token',
    };
    const expected = Object.fromEntries(keys.map((k) => [k, (ROUTE_ROLES[k] as readonly Role[]).map((r) => names[r])]));
    assert.deepEqual(documented, expected);
  });

  it('a revoked token and a disabled user are refused at once; a role change applies at once', async () => {
    const token = await user('tess', 'viewer');
    assert.equal((await stack.http('GET', '/v1/runs', { token })).status, 200);
    assert.equal((await stack.http('POST', '/v1/windows', { token, body: {} })).status, 403);

    // Role change: the same token may now do what the new role may.
    const promoted = await stack.http('PATCH', '/v1/users/tess', { body: { role: 'admin' } });
    assert.equal(promoted.status, 200, JSON.stringify(promoted.body));
    assert.equal(promoted.body.user.role, 'admin');
    assert.equal((await stack.http('POST', '/v1/windows', { token, body: {} })).status, 400, 'admin now');

    const disabled = await stack.http('PATCH', '/v1/users/tess', { body: { disabled: true } });
    assert.equal(disabled.status, 200);
    assert.ok(disabled.body.user.disabledAt);
    const refused = await stack.http('GET', '/v1/runs', { token });
    assert.equal(refused.status, 401);
    assert.match(refused.body.error.message, /user tess is disabled/);
    const noNewToken = await stack.http('POST', '/v1/users/tess/tokens', { body: {} });
    assert.equal(noNewToken.status, 409, 'a disabled user gets no new token');
    assert.equal((await stack.http('PATCH', '/v1/users/tess', { body: { disabled: false } })).status, 200);
    assert.equal((await stack.http('GET', '/v1/runs', { token })).status, 200, 'enabled again');

    const second = await stack.http('POST', '/v1/users/tess/tokens', { body: { note: 'laptop' } });
    assert.equal(second.status, 201);
    const shown = await stack.http('GET', '/v1/users/tess');
    assert.equal(shown.body.user.tokens.length, 2);
    assert.ok(
      shown.body.user.tokens.every((t: any) => !('token' in t) && !('tokenHash' in t)),
      'secrets are never shown again',
    );
    const first = shown.body.user.tokens.find((t: any) => t.note === 'test');
    const revoked = await stack.http('DELETE', `/v1/users/tess/tokens/${first.id}`);
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    assert.ok(revoked.body.token.revokedAt);
    const gone = await stack.http('GET', '/v1/runs', { token });
    assert.equal(gone.status, 401);
    assert.match(gone.body.error.message, new RegExp(`token ${first.id} was revoked`));
    assert.equal(
      (await stack.http('GET', '/v1/runs', { token: second.body.token })).status,
      200,
      'the other token works',
    );

    const listed = await stack.http('GET', '/v1/users');
    assert.deepEqual(
      listed.body.users.map((u: any) => [u.name, u.role, u.createdBy]),
      [
        ['adam', 'admin', 'alice'],
        ['bob', 'approver', 'alice'], // the stack's second test approver
        ['paula', 'approver', 'alice'],
        ['rita', 'requester', 'alice'],
        ['tess', 'admin', 'alice'],
        ['vic', 'viewer', 'alice'],
      ],
    );
    const dup = await stack.http('POST', '/v1/users', { body: { name: 'tess', role: 'viewer' } });
    assert.equal(dup.status, 409);
    const bootstrap = await stack.http('POST', '/v1/users', { body: { name: 'alice', role: 'viewer' } });
    assert.equal(bootstrap.status, 409, 'the bootstrap admin name is taken');
    const bad = await stack.http('POST', '/v1/users', { body: { name: 'Bob Smith', role: 'viewer' } });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.field, 'name');
    const extra = await stack.http('POST', '/v1/users', { body: { name: 'bob', role: 'viewer', admin: true } });
    assert.equal(extra.status, 400, 'strict: unknown fields are refused');
    const badRole = await stack.http('POST', '/v1/users', { body: { name: 'bob', role: 'root' } });
    assert.equal(badRole.status, 400);
  });

  const startRun = async (token: string | undefined, id: string) => {
    const r = await stack.http('POST', '/v1/runs', {
      token,
      body: { agentId: id, mode: 'apply', approval: 'required' },
    });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return r.body.run as { id: string; requestedBy: string; fourEyes: boolean };
  };
  const awaitingApproval = (id: string) =>
    stack.waitForRun(id, (r) => r.phase === 'awaiting-approval' || r.outcome !== null);

  it('a requester starts runs and cancels only their own; an approver cancels any', async () => {
    const agent = await stack.startAgent('cancel-host', PLAN);
    const mine = await startRun(tokens.requester!, agent.id);
    assert.equal(mine.requestedBy, 'rita');
    const other = await startRun(tokens.admin!, agent.id);
    const refused = await stack.http('POST', `/v1/runs/${other.id}/cancel`, { token: tokens.requester });
    assert.equal(refused.status, 403);
    assert.match(refused.body.error.message, /rita may cancel only runs they requested/);
    const ok = await stack.http('POST', `/v1/runs/${mine.id}/cancel`, { token: tokens.requester });
    assert.equal(ok.status, 202, JSON.stringify(ok.body));
    assert.equal((await stack.waitForOutcome(mine.id)).outcome, 'cancelled');
    const byApprover = await stack.http('POST', `/v1/runs/${other.id}/cancel`, { token: tokens.approver });
    assert.equal(byApprover.status, 202, 'an approver may stop any run');
    assert.equal((await stack.waitForOutcome(other.id)).outcome, 'cancelled');
  });

  it("four-eyes on an agent: the requester's approval is 403, another approver's is 200; pinned per run", async () => {
    const agent = await stack.startAgent('four-eyes-host', PLAN);
    const on = await stack.http('PATCH', `/v1/agents/${agent.id}`, { body: { fourEyes: true } });
    assert.equal(on.status, 200, JSON.stringify(on.body));
    assert.equal(on.body.agent.fourEyes, true);
    assert.equal(
      (await stack.http('PATCH', `/v1/agents/${agent.id}`, { token: tokens.approver, body: { fourEyes: false } }))
        .status,
      403,
    );

    const run = await startRun(tokens.admin!, agent.id);
    assert.equal(run.fourEyes, true);
    const waiting = await awaitingApproval(run.id);
    assert.equal(waiting.phase, 'awaiting-approval');
    // Switched off after the run started: the run keeps the rule it was made with.
    await stack.http('PATCH', `/v1/agents/${agent.id}`, { body: { fourEyes: false } });
    const self = await stack.http('POST', `/v1/runs/${run.id}/approve`, {
      token: tokens.admin,
      body: signed(run.id, waiting.planHash, 'adam'),
    });
    assert.equal(self.status, 403, JSON.stringify(self.body));
    assert.equal(self.body.error.message, 'four-eyes: adam requested this run and cannot approve it');
    assert.equal((await stack.http('GET', `/v1/runs/${run.id}`)).body.run.phase, 'awaiting-approval');
    // Around the API, straight to Temporal with a valid signature: the workflow holds four-eyes too.
    await stack.temporal.workflow
      .getHandle(run.id)
      .signal(approveSignal, stack.signApproval(run.id, waiting.planHash, 'adam'));
    await assert.rejects(
      stack.temporal.workflow
        .getHandle(run.id)
        .executeUpdate(approveUpdate, { args: [stack.signApproval(run.id, waiting.planHash, 'adam')] }),
      (err: any) => /four-eyes: adam requested this run/.test(String(err.cause?.message ?? err.message)),
    );
    const ignored = await stack.waitForRun(run.id, (r) => r.events.some((e: any) => e.kind === 'ignored-approve'));
    assert.match(
      ignored.events.find((e: any) => e.kind === 'ignored-approve').detail.reason,
      /^four-eyes: adam requested this run/,
    );
    assert.equal(ignored.phase, 'awaiting-approval', 'the signal changed nothing');
    const other = await stack.http('POST', `/v1/runs/${run.id}/approve`, {
      token: tokens.approver,
      body: signed(run.id, waiting.planHash, 'paula'),
    });
    assert.equal(other.status, 200, JSON.stringify(other.body));
    const done = await stack.waitForOutcome(run.id);
    assert.equal(done.outcome, 'completed');
    assert.equal(done.approvedBy, 'paula');

    // Off (for runs made from now on): the requester may approve their own run.
    const free = await startRun(tokens.admin!, agent.id);
    assert.equal(free.fourEyes, false);
    const w2 = await awaitingApproval(free.id);
    const selfOk = await stack.http('POST', `/v1/runs/${free.id}/approve`, {
      token: tokens.admin,
      body: signed(free.id, w2.planHash, 'adam'),
    });
    assert.equal(selfOk.status, 200, JSON.stringify(selfOk.body));
    assert.equal((await stack.waitForOutcome(free.id)).approvedBy, 'adam');
  });

  it("four-eyes on a window: its runs are pinned with it and the window's creator may not approve them", async () => {
    const win = await stack.http('POST', '/v1/windows', {
      token: tokens.admin,
      body: {
        name: 'four-eyes window',
        targets: { agentIds: [agentId] },
        ...TRIGGER_ONLY_WINDOW,
        timezone: 'UTC',
        approval: 'pre-approved',
        leadSeconds: 0,
        paused: true,
        fourEyes: true,
      },
    });
    assert.equal(win.status, 201, JSON.stringify(win.body));
    assert.equal(win.body.window.fourEyes, true);
    const off = await stack.http('PATCH', `/v1/windows/${win.body.window.id}`, { body: { fourEyes: false } });
    assert.equal(off.body.window.fourEyes, false);
    await stack.http('PATCH', `/v1/windows/${win.body.window.id}`, { body: { fourEyes: true } });

    // The row a firing writes (the control activity's own insert), without waiting for a firing.
    const runId = `patch-run.${agentId}.01JDZZZZZZZZZZZZZZZZZZZZZY`;
    const [row] = await insertRunRows(stack.database.db, [
      {
        runId,
        agentId,
        mode: 'apply',
        approval: 'required',
        requestedBy: `window:${win.body.window.id}`,
        windowId: win.body.window.id,
        windowStart: Date.now(),
      },
    ]);
    assert.equal(row.four_eyes, true);
    const planHash = 'a'.repeat(64);
    const creator = await stack.http('POST', `/v1/runs/${runId}/approve`, {
      token: tokens.admin,
      body: signed(runId, planHash, 'adam'),
    });
    assert.equal(creator.status, 403, JSON.stringify(creator.body));
    assert.match(creator.body.error.message, /^four-eyes: adam created window win-\S+, which requested this run/);
    // Anyone else passes the four-eyes check (and meets the run's own state: no workflow here).
    const other = await stack.http('POST', `/v1/runs/${runId}/approve`, {
      token: tokens.approver,
      body: signed(runId, planHash, 'paula'),
    });
    assert.notEqual(other.status, 403, JSON.stringify(other.body));
  });
});
