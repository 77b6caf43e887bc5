/**
 * The OpenAPI document (GET /v1/openapi.json): public, valid OpenAPI 3.1 (checked against the
 * 3.1 JSON schema by @seriousme/openapi-schema-validator), and complete: every layer the app's
 * Koa routers really have, walked here independently of the generator, is an operation of the
 * document with the roles of api/roles.ts and the request schemas its `validate` checks; and no
 * operation is documented that the routers do not have. Every status a route was seen to answer
 * is checked against the document by test/api/fuzz.test.ts and test/api/route-roles.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import { z } from 'zod';
import { createApp, mountedRouters } from '../../api/app';
import { ROUTE_ROLES, routeKeyOf } from '../../api/roles';
import { schemasOf } from '../../api/validate';
import { ADMIN_TOKEN, Stack } from '../support/stack';

interface Doc {
  openapi: string;
  paths: Record<string, Record<string, { responses: Record<string, unknown>; [k: string]: unknown }>>;
}

describe('GET /v1/openapi.json', () => {
  const stack = new Stack();
  let doc: Doc;

  before(async () => {
    await stack.start();
    // No token: the document is public.
    const res = await fetch(`${stack.baseUrl}/v1/openapi.json`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/);
    doc = (await res.json()) as Doc;
  });
  after(() => stack.stop());

  it('validates as OpenAPI 3.1', async () => {
    assert.equal(doc.openapi, '3.1.0');
    const result = await new Validator().validate(doc as unknown as Record<string, unknown>);
    assert.ok(result.valid, JSON.stringify(result.errors, null, 2)?.slice(0, 3000));
  });

  it('has exactly the operations of the routers the app mounts, with their roles and schemas', () => {
    const app = createApp({
      db: stack.database.db,
      temporal: stack.temporal,
      admins: [{ name: 'alice', token: ADMIN_TOKEN }],
      controlQueue: stack.controlQueue,
      runDefaults: stack.runDefaults,
    });
    const routers = mountedRouters(app);
    assert.ok(routers.length > 5, 'createApp registers its routers');
    const seen = new Set<string>();
    const missing: string[] = [];
    for (const router of routers)
      for (const layer of router.stack)
        for (const method of layer.methods.filter((m) => m !== 'HEAD')) {
          const path = String(layer.path).replace(/:(\w+)/g, '{$1}');
          const op = doc.paths[path]?.[method.toLowerCase()];
          seen.add(`${method} ${path}`);
          if (!op) {
            missing.push(`${method} ${layer.path}`);
            continue;
          }
          const key = layer.stack.map(routeKeyOf).find(Boolean);
          if (key) assert.deepEqual(op['x-roles'], [...ROUTE_ROLES[key]], `${key}: roles`);
          const schemas = layer.stack.map(schemasOf).find(Boolean) ?? {};
          const names = (s?: z.ZodType) =>
            Object.keys(
              (z.toJSONSchema(s ?? z.object({}), { io: 'input' }) as { properties?: object }).properties ?? {},
            );
          const params = (op.parameters ?? []) as { name: string; in: string }[];
          assert.deepEqual(
            params.filter((p) => p.in === 'path').map((p) => p.name),
            names(schemas.params),
            `${method} ${layer.path}: path parameters`,
          );
          assert.deepEqual(
            params.filter((p) => p.in === 'query').map((p) => p.name),
            names(schemas.query),
            `${method} ${layer.path}: query parameters`,
          );
          assert.equal(op.requestBody !== undefined, schemas.body !== undefined, `${method} ${layer.path}: body`);
          // Every operation documents its success and the errors of its kind.
          const statuses = Object.keys(op.responses).map(Number);
          assert.ok(statuses.includes(500), `${method} ${layer.path}: 500`);
          if (key) assert.ok(statuses.includes(401) && statuses.includes(403), `${key}: 401 and 403`);
          if (schemas.body) assert.ok(statuses.includes(413) && statuses.includes(415), `${key}: 413/415`);
        }
    assert.deepEqual(missing, [], 'routes the routers have but the document lacks');
    const documented = Object.entries(doc.paths).flatMap(([p, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`),
    );
    assert.deepEqual(
      documented.filter((d) => !seen.has(d)),
      [],
      'operations documented that no router has',
    );
    // Every key of the role table is a route (and so documented).
    for (const key of Object.keys(ROUTE_ROLES)) {
      const [method, path] = key.split(' ');
      assert.ok(doc.paths[path.replace(/:(\w+)/g, '{$1}')]?.[method.toLowerCase()], `${key} documented`);
    }
    console.log(`openapi: ${documented.length} operations on ${Object.keys(doc.paths).length} paths`);
  });
});
