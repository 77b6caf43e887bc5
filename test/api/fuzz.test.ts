/**
 * Property-based fuzz of every route, against a real stack (PostgreSQL, Temporal, control
 * worker). Requests are generated from the routes' own zod schemas (through z.toJSONSchema, so a
 * changed schema changes the fuzz without a second description to keep in step), then made
 * hostile: NUL and control characters, 1 MB strings, wrong types, extra and missing fields, deep
 * nesting, invalid JSON and UTF-8, wrong content types, gzip/br/deflate headers over bodies that
 * are not compressed, oversized bodies, odd methods, tokens of every role and none.
 *
 * Asserted for every request: no status ≥ 500; every error has the error shape; a refused
 * request (≥ 400) commits no write. Writes are seen by row triggers that log each one with the
 * connection's application_name, so the control worker's own writes (runs the fuzz started move
 * on in the background) are told apart from the API's.
 */
import assert from 'node:assert/strict';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { z } from 'zod';
import { AgentParams, AgentRegistration, UpdateAgentBody } from '../../api/agents/schema';
import {
  AgentParams as ExceptionAgentParams,
  CreateExceptionBody,
  ExceptionParams,
  UpdateExceptionBody,
} from '../../api/exceptions/schema';
import { ApproveBody, ListRunsQuery, RejectBody, RunParams, StartRunBody } from '../../api/runs/schema';
import { ApproveGroupBody, DiffQuery, GroupParams, RejectGroupBody } from '../../api/reviews/schema';
import { ComplianceQuery } from '../../api/compliance/schema';
import { ContainerDefaults, ContainerInventory, ContainerParams, NodeParams } from '../../api/containers/schema';
import { ScriptParams } from '../../api/scripts/schema';
import { CreateKeyBody, KeyParams } from '../../api/keys/schema';
import { CreateEnrolmentTokenBody, EnrolmentTokenParams } from '../../api/enrolment-tokens/schema';
import {
  CreateUserBody,
  CreateUserTokenBody,
  UpdateUserBody,
  UserParams,
  UserTokenParams,
} from '../../api/users/schema';
import { CreateWindowBody, PauseBody, UpdateWindowBody, WindowParams } from '../../api/windows/schema';
import { CreateWebhookBody, ListDeliveriesQuery, WebhookParams } from '../../api/webhooks/schema';
import { ApiErrorCode } from '../../contract';
import { documentedStatuses } from '../support/openapi';
import { ADMIN_TOKEN, Stack } from '../support/stack';
import { TABLES } from '../support/db';

/** Upper bounds of the run: whichever comes first (a loaded 2-core box gets through fewer). */
const NUM_RUNS = Number(process.env.PN_FUZZ_RUNS ?? 3000);
const TIME_LIMIT_MS = Number(process.env.PN_FUZZ_MS ?? 40_000);
const SEED = process.env.PN_FUZZ_SEED ? Number(process.env.PN_FUZZ_SEED) : undefined;
const CONTROL_APP = 'pn-control';

type Json = unknown;

interface Route {
  method: string;
  path: string;
  params?: z.ZodType;
  query?: z.ZodType;
  body?: z.ZodType;
}

const ROUTES: Route[] = [
  { method: 'GET', path: '/healthz' },
  { method: 'GET', path: '/v1/openapi.json' },
  { method: 'POST', path: '/v1/agents', body: AgentRegistration },
  { method: 'GET', path: '/v1/agents', query: ComplianceQuery },
  { method: 'GET', path: '/v1/agents/:id', params: AgentParams },
  { method: 'PATCH', path: '/v1/agents/:id', params: AgentParams, body: UpdateAgentBody },
  { method: 'POST', path: '/v1/agents/:id/accept', params: AgentParams },
  { method: 'DELETE', path: '/v1/agents/:id', params: AgentParams },
  { method: 'GET', path: '/v1/agents/:id/containers', params: NodeParams },
  { method: 'PUT', path: '/v1/agents/:id/containers', params: NodeParams, body: ContainerInventory },
  {
    method: 'PUT',
    path: '/v1/agents/:id/containers/:vmid/defaults',
    params: ContainerParams,
    body: ContainerDefaults,
  },
  { method: 'POST', path: '/v1/enrolment-tokens', body: CreateEnrolmentTokenBody },
  { method: 'GET', path: '/v1/enrolment-tokens' },
  { method: 'DELETE', path: '/v1/enrolment-tokens/:id', params: EnrolmentTokenParams },
  { method: 'GET', path: '/v1/agents/:agentId/exceptions', params: ExceptionAgentParams },
  { method: 'POST', path: '/v1/agents/:agentId/exceptions', params: ExceptionAgentParams, body: CreateExceptionBody },
  { method: 'PATCH', path: '/v1/agents/:agentId/exceptions/:id', params: ExceptionParams, body: UpdateExceptionBody },
  { method: 'DELETE', path: '/v1/agents/:agentId/exceptions/:id', params: ExceptionParams },
  { method: 'GET', path: '/v1/scripts' },
  { method: 'GET', path: '/v1/scripts/:name', params: ScriptParams },
  { method: 'POST', path: '/v1/runs', body: StartRunBody },
  { method: 'GET', path: '/v1/runs', query: ListRunsQuery },
  { method: 'GET', path: '/v1/runs/:id', params: RunParams },
  { method: 'POST', path: '/v1/runs/:id/approve', params: RunParams, body: ApproveBody },
  { method: 'POST', path: '/v1/runs/:id/reject', params: RunParams, body: RejectBody },
  { method: 'POST', path: '/v1/runs/:id/cancel', params: RunParams },
  { method: 'GET', path: '/v1/reviews' },
  { method: 'GET', path: '/v1/reviews/diff', query: DiffQuery },
  { method: 'POST', path: '/v1/reviews/:planHash/approve', params: GroupParams, body: ApproveGroupBody },
  { method: 'POST', path: '/v1/reviews/:planHash/reject', params: GroupParams, body: RejectGroupBody },
  { method: 'GET', path: '/v1/compliance', query: ComplianceQuery },
  { method: 'POST', path: '/v1/windows', body: CreateWindowBody },
  { method: 'GET', path: '/v1/windows' },
  { method: 'GET', path: '/v1/windows/:id', params: WindowParams },
  { method: 'PATCH', path: '/v1/windows/:id', params: WindowParams, body: UpdateWindowBody },
  { method: 'DELETE', path: '/v1/windows/:id', params: WindowParams },
  { method: 'POST', path: '/v1/windows/:id/pause', params: WindowParams, body: PauseBody },
  { method: 'POST', path: '/v1/windows/:id/resume', params: WindowParams, body: PauseBody },
  { method: 'POST', path: '/v1/windows/:id/trigger', params: WindowParams },
  { method: 'GET', path: '/v1/users' },
  { method: 'POST', path: '/v1/users', body: CreateUserBody },
  { method: 'GET', path: '/v1/users/:name', params: UserParams },
  { method: 'PATCH', path: '/v1/users/:name', params: UserParams, body: UpdateUserBody },
  { method: 'POST', path: '/v1/users/:name/tokens', params: UserParams, body: CreateUserTokenBody },
  { method: 'DELETE', path: '/v1/users/:name/tokens/:id', params: UserTokenParams },
  { method: 'POST', path: '/v1/keys', body: CreateKeyBody },
  { method: 'GET', path: '/v1/keys' },
  { method: 'DELETE', path: '/v1/keys/:id', params: KeyParams },
  { method: 'POST', path: '/v1/webhooks', body: CreateWebhookBody },
  { method: 'GET', path: '/v1/webhooks' },
  { method: 'DELETE', path: '/v1/webhooks/:id', params: WebhookParams },
  { method: 'GET', path: '/v1/webhooks/:id/deliveries', params: WebhookParams, query: ListDeliveriesQuery },
];

// ---- arbitraries from JSON Schema (the zod schemas' input side) ----

interface JsonSchema {
  type?: string | string[];
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
  enum?: Json[];
  const?: Json;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  minItems?: number;
  maxItems?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  format?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
}

const INT32 = 2 ** 31 - 1;
const clamp = (n: number) => Math.max(-INT32, Math.min(INT32, n));

function stringArb(s: JsonSchema): fc.Arbitrary<string> {
  if (s.format === 'date-time') {
    return fc
      .date({ min: new Date('2000-01-01'), max: new Date('2100-01-01'), noInvalidDate: true })
      .map((d) => d.toISOString());
  }
  const maxLength = Math.min(s.maxLength ?? 40, 40);
  if (s.pattern) {
    try {
      return fc.stringMatching(new RegExp(s.pattern)).map((x) => x.slice(0, s.maxLength ?? x.length));
    } catch {
      /* a pattern fast-check cannot generate from: plain strings below */
    }
  }
  return fc.string({ minLength: Math.min(s.minLength ?? 0, maxLength), maxLength });
}

function fromSchema(s: JsonSchema): fc.Arbitrary<Json> {
  if (s.allOf) return fromSchema(Object.assign({}, ...s.allOf, { ...s, allOf: undefined }) as JsonSchema);
  if (s.anyOf ?? s.oneOf) return fc.oneof(...(s.anyOf ?? s.oneOf ?? []).map(fromSchema));
  if (s.const !== undefined) return fc.constant(s.const);
  if (s.enum) return fc.constantFrom(...s.enum);
  const type = Array.isArray(s.type) ? s.type[0] : s.type;
  switch (type) {
    case 'string':
      return stringArb(s);
    case 'integer':
    case 'number': {
      const min = clamp(s.exclusiveMinimum !== undefined ? s.exclusiveMinimum + 1 : (s.minimum ?? -1000));
      const max = clamp(s.exclusiveMaximum !== undefined ? s.exclusiveMaximum - 1 : (s.maximum ?? 100_000));
      return fc.integer({ min: Math.min(min, max), max });
    }
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    case 'array':
      return fc.array(s.items ? fromSchema(s.items) : fc.jsonValue({ maxDepth: 1 }), {
        minLength: Math.min(s.minItems ?? 0, 3),
        maxLength: Math.min(s.maxItems ?? 3, 3),
      });
    case 'object': {
      const props = Object.fromEntries(Object.entries(s.properties ?? {}).map(([k, v]) => [k, fromSchema(v)]));
      return fc.record(props, { requiredKeys: s.required ?? [] });
    }
    default:
      return fc.jsonValue({ maxDepth: 2 });
  }
}

const schemaArb = (schema: z.ZodType) =>
  fromSchema(z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonSchema);

// ---- hostile values ----

const HUGE = 'x'.repeat(1_048_600);
const hostileString = fc.oneof(
  fc.constantFrom('', ' ', '\u0000', 'a\u0000b', '\u0007\u001b[31m', '\r\n', '\t', '\ud800', '\uffff', '💥', '%00'),
  fc.constantFrom('../../etc/passwd', "'; drop table agents; --", '${jndi:x}', '__proto__', 'constructor'),
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.constant(HUGE),
  fc.integer({ min: 1000, max: 70_000 }).map((n) => 'y'.repeat(n)),
);
const hostileValue: fc.Arbitrary<Json> = fc.oneof(
  { weight: 4, arbitrary: hostileString },
  fc.constantFrom(null, true, false, 0, -1, 1.5, 1e308, -1e308, Number.MAX_SAFE_INTEGER + 2, [], {}),
  fc.constant(JSON.parse('{"__proto__": {"polluted": 1}}') as Json),
  fc.jsonValue({ maxDepth: 3 }),
);

type Path = (string | number)[];

/** Every place in a JSON value where a value sits, as a path of keys. */
function paths(value: Json, at: Path = []): Path[] {
  const here = [at];
  if (Array.isArray(value)) return here.concat(...value.map((v, i) => paths(v, [...at, i])));
  if (value && typeof value === 'object')
    return here.concat(...Object.entries(value).map(([k, v]) => paths(v, [...at, k])));
  return here;
}

function setAt(value: Json, at: Path, to: unknown): Json {
  if (at.length === 0) return to === REMOVE ? undefined : to;
  const [head, ...rest] = at;
  const copy = (Array.isArray(value) ? [...value] : { ...(value as object) }) as Record<string | number, Json>;
  const next = setAt(copy[head], rest, to);
  if (next === undefined && rest.length === 0 && to === REMOVE) delete copy[head];
  else copy[head] = next;
  return copy;
}
const REMOVE = Symbol('remove');

/** A JSON value with one of: a value replaced by something hostile, a key removed or one added. */
function mutate(base: fc.Arbitrary<Json>): fc.Arbitrary<Json> {
  return base.chain((value) => {
    const all = paths(value);
    return fc.oneof(
      fc.tuple(fc.constantFrom(...all), hostileValue).map(([at, v]) => setAt(value, at, v)),
      fc.constantFrom(...all).map((at) => setAt(value, at, REMOVE)),
      fc
        .tuple(fc.constantFrom('extra', '__proto__', 'constructor', 'agentId', ''), hostileValue)
        .map(([k, v]) => (value && typeof value === 'object' && !Array.isArray(value) ? { ...value, [k]: v } : value)),
    );
  });
}

// ---- bodies, paths, queries, headers ----

/** How a body's bytes are made; materialised at send time so fast-check never holds 50 MB. */
type BodySpec =
  | { kind: 'json'; value: Json }
  | { kind: 'text'; text: string }
  | { kind: 'bytes'; bytes: number[] }
  | { kind: 'nested'; depth: number; open: '[' | '{"a":' }
  | { kind: 'oversize' }
  | { kind: 'none' };

/**
 * A value with the fixtures' ids (and a real time zone) where the schema asks for them, so that
 * generated bodies also get past the service's own checks and reach the database and Temporal.
 */
function withKnown(value: Json, fx: Fixtures): Json {
  if (Array.isArray(value)) return value.map((v) => withKnown(v, fx));
  if (!value || typeof value !== 'object') return value;
  const known: Record<string, Json> = { agentId: fx.agentId, agentIds: [fx.agentId], timezone: 'UTC' };
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, k in known ? known[k] : withKnown(v, fx)]));
}

const bodyFor = (route: Route, fx: Fixtures): fc.Arbitrary<BodySpec> => {
  const generated = route.body ? schemaArb(route.body) : fc.jsonValue({ maxDepth: 2 });
  const valid = fc.tuple(generated, fc.boolean()).map(([v, known]) => (known ? withKnown(v, fx) : v));
  return fc.oneof(
    { weight: 4, arbitrary: valid.map((value) => ({ kind: 'json' as const, value })) },
    { weight: 8, arbitrary: mutate(valid).map((value) => ({ kind: 'json' as const, value })) },
    {
      weight: 2,
      arbitrary: fc
        .constantFrom(
          '{',
          '{"a":',
          'null',
          '"str"',
          '1',
          '[]',
          'true',
          '{"a":1,}',
          "{'a':1}",
          '\u0000',
          '{"a":"\\u0000"}',
        )
        .map((text) => ({ kind: 'text' as const, text })),
    },
    {
      weight: 1,
      arbitrary: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 64 }).map((bytes) => ({
        kind: 'bytes' as const,
        bytes: [0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc3, 0x28, ...bytes],
      })),
    },
    {
      weight: 1,
      arbitrary: fc
        .record({ depth: fc.constantFrom(100, 10_000, 100_000), open: fc.constantFrom('[' as const, '{"a":' as const) })
        .map((r) => ({ kind: 'nested' as const, ...r })),
    },
    { weight: 1, arbitrary: fc.constant({ kind: 'oversize' as const }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'none' as const }) },
  );
};

function bodyBytes(spec: BodySpec): Buffer | undefined {
  switch (spec.kind) {
    case 'json':
      return spec.value === undefined ? undefined : Buffer.from(JSON.stringify(spec.value));
    case 'text':
      return Buffer.from(spec.text);
    case 'bytes':
      return Buffer.from(spec.bytes);
    case 'nested':
      return Buffer.from(spec.open.repeat(spec.depth) + '1' + (spec.open === '[' ? ']' : '}').repeat(spec.depth));
    case 'oversize':
      return Buffer.from(JSON.stringify({ pad: 'z'.repeat(1_100_000) }));
    case 'none':
      return undefined;
  }
}

/** none, a real gzip/br/deflate, `<name>-fake` (the header over a plain body) or a header as it is. */
type Encoding = string;
const encodingArb: fc.Arbitrary<Encoding> = fc.oneof(
  { weight: 10, arbitrary: fc.constant('none') },
  { weight: 4, arbitrary: fc.constantFrom('gzip', 'br', 'deflate', 'gzip-fake', 'br-fake', 'deflate-fake') },
  { weight: 1, arbitrary: fc.constantFrom('identity', 'zstd', 'gzip, br', 'GZIP', 'x-gzip', 'compress') },
);

function encode(encoding: Encoding, bytes: Buffer | undefined): { header?: string; bytes?: Buffer } {
  if (encoding === 'none' || !bytes) return { bytes };
  if (encoding === 'gzip') return { header: 'gzip', bytes: gzipSync(bytes) };
  if (encoding === 'br') return { header: 'br', bytes: brotliCompressSync(bytes) };
  if (encoding === 'deflate') return { header: 'deflate', bytes: deflateSync(bytes) };
  if (encoding.endsWith('-fake')) return { header: encoding.slice(0, -5), bytes };
  return { header: encoding, bytes };
}

const contentTypeArb = fc.oneof(
  { weight: 12, arbitrary: fc.constant('application/json') },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      'none',
      'application/json; charset=utf-16',
      'application/json; charset=latin1',
      'application/vnd.api+json',
      'application/csp-report',
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/xml',
      'garbage',
      '*/*',
    ),
  },
);

/** Percent-encoding of the UTF-8 bytes (encodeURIComponent throws on a lone surrogate). */
const pct = (s: string) => Array.from(Buffer.from(s), (b) => `%${b.toString(16).padStart(2, '0')}`).join('');

const hostileSegment = fc.oneof(
  fc.constantFrom('%00', '%zz', '%E0%A4%A', '%', '..', 'a%2Fb', '%C0%AF', '%ff%fe', '%F0%9F%92%A5', '%0a', '%7f'),
  fc.integer({ min: 100, max: 20_000 }).map((n) => 'q'.repeat(n)),
  hostileString.filter((s) => s.length < 1000).map(pct),
);

/** A query string from a JSON value: strings as they are, anything else as its JSON. */
const queryString = (q: Json) =>
  new URLSearchParams(
    Object.entries(q && typeof q === 'object' ? q : {}).map(([k, v]): [string, string] => [
      k,
      typeof v === 'string' ? v : (JSON.stringify(v) ?? ''),
    ]),
  ).toString();

type Role = 'admin' | 'approver' | 'requester' | 'viewer' | 'agent' | 'enrol' | 'none' | 'bogus';
const roleArb: fc.Arbitrary<Role> = fc.constantFrom(
  'admin',
  'admin',
  'admin',
  'approver',
  'requester',
  'viewer',
  'agent',
  'enrol',
  'none',
  'bogus',
);

interface Fixtures {
  agentId: string;
  agentToken: string;
  /** User tokens by role (users fuzz-approver, fuzz-requester, fuzz-viewer) and one token id. */
  userTokens: Record<'approver' | 'requester' | 'viewer', string>;
  userTokenId: string;
  exceptionId: string;
  windowId: string;
  runId: string;
}

interface FuzzRequest {
  /** The route the request was made for (method and path may since have been made hostile). */
  route: string;
  method: string;
  url: string;
  role: Role;
  contentType: string;
  encoding: Encoding;
  body: BodySpec;
}

function requestArb(fx: Fixtures): fc.Arbitrary<FuzzRequest> {
  const known: Record<string, string[]> = {
    id: [fx.agentId, fx.exceptionId, fx.windowId, fx.runId, fx.userTokenId, 'apt-update.sh'],
    agentId: [fx.agentId],
    name: ['apt-update.sh', 'dnf-update.sh', 'fuzz-viewer', 'fuzz-requester'],
  };
  return fc.constantFrom(...ROUTES).chain((route) => {
    const names = [...route.path.matchAll(/:(\w+)/g)].map((m) => m[1]);
    const paramsShape = route.params ? (z.toJSONSchema(route.params, { io: 'input' }) as JsonSchema) : undefined;
    const segment = (name: string) =>
      fc.oneof(
        { weight: 3, arbitrary: fc.constantFrom(...(known[name] ?? ['x'])) },
        {
          weight: 3,
          arbitrary: (paramsShape?.properties?.[name] ? fromSchema(paramsShape.properties[name]) : fc.string()).map(
            (v) => pct(String(v)),
          ),
        },
        { weight: 2, arbitrary: hostileSegment },
      );
    const pathArb = fc
      .tuple(...names.map(segment))
      .map((values) => names.reduce((p, name, i) => p.replace(`:${name}`, values[i]), route.path));
    const query = route.query
      ? fc.oneof(
          schemaArb(route.query).map((q) => queryString(q)),
          mutate(schemaArb(route.query)).map(queryString),
          fc.constantFrom('before=%00', 'limit=1e3', 'limit=-1', 'phase=a&phase=b', 'limit=%zz', 'before[]=1', 'x=1'),
        )
      : fc.oneof(
          { weight: 5, arbitrary: fc.constant('') },
          { weight: 1, arbitrary: fc.constantFrom('a=%00', 'x=%zz') },
        );
    const method = fc.oneof(
      { weight: 12, arbitrary: fc.constant(route.method) },
      { weight: 1, arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD', 'PROPFIND') },
    );
    return fc.record({
      route: fc.constant(`${route.method} ${route.path}`),
      method,
      url: fc.tuple(pathArb, query).map(([p, q]) => (q ? `${p}?${q}` : p)),
      role: roleArb,
      contentType: contentTypeArb,
      encoding: encodingArb,
      body: bodyFor(route, fx),
    });
  });
}

// ---- the test ----

describe('fuzzing every route never gets a 5xx, always gets the error shape, and a refusal writes nothing', () => {
  // Long pickup and approval: runs the fuzz starts sit waiting for an agent that never comes.
  const stack = new Stack({ approvalMs: 600_000, agentPickupMs: 600_000, scriptMs: 60_000 });
  stack.controlDatabaseUrl = (url) => {
    const u = new URL(url);
    u.searchParams.set('application_name', CONTROL_APP);
    return u.toString();
  };
  const fx = {} as Fixtures;

  before(async () => {
    await stack.start();
    const db = stack.database.db;
    await db.raw(`create table fuzz_writes (id bigserial primary key, tbl text, op text, app text)`);
    await db.raw(`create function fuzz_log() returns trigger language plpgsql as $$
      begin
        insert into fuzz_writes (tbl, op, app) values (tg_table_name, tg_op, current_setting('application_name'));
        return null;
      end $$`);
    for (const table of TABLES)
      await db.raw(
        `create trigger fuzz_log after insert or update or delete on ${table} for each row execute function fuzz_log()`,
      );

    const reg = await stack.http('POST', '/v1/agents', {
      token: stack.enrolToken,
      body: { hostname: 'fuzz-01', os: { id: 'debian', versionId: '12', family: 'apt' } },
    });
    assert.equal(reg.status, 201);
    fx.agentId = reg.body.agent.id;
    fx.agentToken = reg.body.token;
    const exc = await stack.http('POST', `/v1/agents/${fx.agentId}/exceptions`, {
      body: { package: 'nginx', reason: 'pinned' },
    });
    assert.equal(exc.status, 201, JSON.stringify(exc.body));
    fx.exceptionId = exc.body.exception.id;
    const win = await stack.http('POST', '/v1/windows', {
      body: {
        name: 'fuzz',
        targets: { agentIds: [fx.agentId] },
        recurrence: { everySeconds: 86400 },
        timezone: 'UTC',
        durationSeconds: 3600,
        cutoffSeconds: 0,
        approval: 'dry-run-only',
        paused: true,
      },
    });
    assert.equal(win.status, 201, JSON.stringify(win.body));
    fx.windowId = win.body.window.id;
    const run = await stack.http('POST', '/v1/runs', { body: { agentId: fx.agentId, mode: 'dry-run' } });
    assert.equal(run.status, 202, JSON.stringify(run.body));
    fx.runId = run.body.run.id;
    fx.userTokens = {} as Fixtures['userTokens'];
    for (const role of ['approver', 'requester', 'viewer'] as const) {
      const u = await stack.http('POST', '/v1/users', { body: { name: `fuzz-${role}`, role } });
      assert.equal(u.status, 201, JSON.stringify(u.body));
      const t = await stack.http('POST', `/v1/users/fuzz-${role}/tokens`, { body: {} });
      assert.equal(t.status, 201, JSON.stringify(t.body));
      fx.userTokens[role] = t.body.token;
      fx.userTokenId = t.body.id;
    }
  });
  after(() => stack.stop());

  /** Writes committed by the API's connections (not the control worker's) so far. */
  const apiWrites = async () =>
    Number(
      (
        await stack.database.db('fuzz_writes').whereNot({ app: CONTROL_APP }).count<{ count: string }[]>('* as count')
      )[0].count,
    );

  it('holds for every generated request', async () => {
    const tokens: Record<Role, string | undefined> = {
      admin: ADMIN_TOKEN,
      agent: fx.agentToken,
      ...fx.userTokens,
      enrol: stack.enrolToken,
      none: undefined,
      bogus: 'pna_not-a-token',
    };
    const statuses = new Map<number, number>();
    const documented = documentedStatuses();
    let tried = 0;
    let previous = '';
    const started = Date.now();
    await fc.assert(
      fc.asyncProperty(requestArb(fx), async (req) => {
        tried++;
        const token = tokens[req.role];
        const noBody = req.method === 'GET' || req.method === 'HEAD';
        const { header, bytes } = noBody ? {} : encode(req.encoding, bodyBytes(req.body));
        const headers: Record<string, string> = {};
        if (token) headers.authorization = `Bearer ${token}`;
        if (!noBody && req.contentType !== 'none') headers['content-type'] = req.contentType;
        if (header) headers['content-encoding'] = header;
        const writesBefore = await apiWrites();
        const sent = `${req.method} ${req.url.slice(0, 200)} (${req.role}, ${req.contentType}, ${req.encoding}, ${req.body.kind})`;
        let res: Response;
        let text: string;
        try {
          res = await fetch(stack.baseUrl + req.url, { method: req.method, headers, body: bytes });
          text = await res.text();
        } catch (err) {
          throw new Error(`${sent} failed after ${previous}`, { cause: err });
        }
        previous = sent;
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        const what = `${sent} → ${res.status} ${text.slice(0, 300)}`;
        assert.ok(res.status < 500, what);
        // Node's HTTP parser refuses a request line and headers over 16 KB with a bare 431
        // before the app sees it: no route answers that, so it carries no error shape.
        if (res.status >= 400 && req.method !== 'HEAD' && res.status !== 431) {
          let body: { error?: { code?: unknown; message?: unknown } };
          try {
            body = JSON.parse(text) as typeof body;
          } catch {
            assert.fail(`not JSON: ${what}`);
          }
          assert.ok(ApiErrorCode.safeParse(body.error?.code).success, `error code: ${what}`);
          assert.equal(typeof body.error?.message, 'string', `error message: ${what}`);
        }
        if (res.status >= 400) assert.equal(await apiWrites(), writesBefore, `a refused request wrote: ${what}`);
        // The OpenAPI document lists every status the route answers (405 and 431 are no route's).
        if (req.method === req.route.split(' ')[0] && res.status !== 405 && res.status !== 431) {
          const pattern = new RegExp(`^${req.route.split(' ')[1].replace(/:\w+/g, '[^/]+')}$`);
          if (pattern.test(new URL(stack.baseUrl + req.url).pathname))
            assert.ok(documented.get(req.route)?.includes(res.status), `not in the OpenAPI document: ${what}`);
        }
      }),
      {
        numRuns: NUM_RUNS,
        interruptAfterTimeLimit: TIME_LIMIT_MS,
        markInterruptAsFailure: false,
        endOnFailure: true,
        seed: SEED,
      },
    );
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const byStatus = [...statuses].sort(([a], [b]) => a - b).map(([s, n]) => `${s}×${n}`);
    console.log(`fuzz: ${tried} requests in ${seconds} s over ${ROUTES.length} routes; ${byStatus.join(' ')}`);
    assert.ok(tried >= 200, `only ${tried} requests were tried`);
  });
});
