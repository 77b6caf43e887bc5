/**
 * The OpenAPI 3.1 document of the API, generated from the Koa routers themselves: each layer's
 * path and methods, its `allow` middleware (roles), its `validate` middleware (the zod schemas of
 * params, query and body, through z.toJSONSchema) and its row in ./routes.ts (summary, success
 * status, domain errors). A layer with no row is an error here, so an undocumented route cannot
 * be served (createApp builds the document at start).
 */
import { z } from 'zod';
import { ApiErrorCode } from '../../contract';
import { STATUS_OF } from '../errors';
import { routeKeyOf, rolesOf } from '../roles';
import { schemasOf, type Schemas } from '../validate';
import { OPEN_ROUTE_DOCS, ROUTE_DOCS, type RouteDoc } from './routes';

type Json = Record<string, unknown>;

/** What the generator reads of a Koa router: its layers. */
export interface Routes {
  stack: { path: string | RegExp; methods: string[]; stack: unknown[] }[];
}

/** One documented operation: what the completeness test compares with the routers' layers. */
export interface Operation {
  method: string;
  /** Koa's form, /v1/runs/:id */
  path: string;
  statuses: number[];
}

/** zod → JSON Schema (2020-12, OpenAPI 3.1's dialect), as a request is read: defaults optional. */
function jsonSchema(schema: z.ZodType): Json {
  const s = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Json;
  delete s.$schema;
  return s;
}

const openApiPath = (koaPath: string) => koaPath.replace(/:(\w+)/g, '{$1}');

const REASON: Record<number, string> = {
  400: 'Invalid request (the error names the field)',
  401: 'Missing, unknown, revoked or disabled token',
  403: "The caller's role may not do this",
  404: 'Not found',
  409: 'Conflict with the current state',
  413: 'Body larger than 1 MB',
  415: 'Body not JSON, or an unknown Content-Encoding',
  500: 'Internal error (no details)',
  503: 'Temporal or the database is unavailable',
};

function successBody(returns: string[] | undefined): Json | undefined {
  if (!returns) return undefined;
  const properties: Json = {};
  for (const key of returns)
    properties[key.replace(/\[\]$/, '')] = key.endsWith('[]') ? { type: 'array', items: { type: 'object' } } : {};
  return { type: 'object', required: returns.map((k) => k.replace(/\[\]$/, '')), properties };
}

function parameters(where: 'path' | 'query', schema: z.ZodType | undefined): Json[] {
  if (!schema) return [];
  const s = jsonSchema(schema);
  const props = (s.properties ?? {}) as Record<string, Json>;
  const required = new Set((s.required ?? []) as string[]);
  return Object.entries(props).map(([name, p]) => ({
    name,
    in: where,
    required: where === 'path' || required.has(name),
    ...(typeof p.description === 'string' ? { description: p.description } : {}),
    schema: p,
  }));
}

/** The error statuses of a route: the ones of its kind (see ./routes.ts) and its own. */
function errorStatuses(doc: RouteDoc, schemas: Schemas, authenticated: boolean): number[] {
  const codes = new Set<ApiErrorCode>(['internal', ...(doc.errors ?? [])]);
  if (authenticated) codes.add('unauthorized').add('forbidden');
  if (schemas.params || schemas.query || schemas.body) codes.add('validation_failed');
  if (schemas.body) codes.add('payload_too_large').add('unsupported_media_type');
  if (schemas.params) codes.add('not_found');
  return [...new Set([...codes].map((c) => STATUS_OF[c]))].sort((a, b) => a - b);
}

export interface OpenApiDocument {
  openapi: '3.1.0';
  info: Json;
  paths: Record<string, Record<string, Json>>;
  components: Json;
  [more: string]: unknown;
}

/**
 * The document for the routers (the open one first, then the authenticated ones). Throws if a
 * layer has no row in ./routes.ts, or an authenticated layer no `allow` middleware.
 */
export function openApiDocument(
  open: Routes,
  routers: Routes[],
  version: string,
): { document: OpenApiDocument; operations: Operation[] } {
  const paths: OpenApiDocument['paths'] = {};
  const operations: Operation[] = [];
  const layers = [
    ...open.stack.map((layer) => ({ layer, authenticated: false })),
    ...routers.flatMap((r) => r.stack.map((layer) => ({ layer, authenticated: true }))),
  ];
  for (const { layer, authenticated } of layers) {
    if (typeof layer.path !== 'string') throw new Error(`a route with a RegExp path cannot be documented`);
    for (const method of layer.methods.filter((m) => m !== 'HEAD')) {
      const key = `${method} ${layer.path}`;
      const guard = layer.stack.map(routeKeyOf).find(Boolean);
      if (authenticated && guard !== key) throw new Error(`route ${key} has no allow('${key}') (api/roles.ts)`);
      const doc: RouteDoc | undefined = authenticated
        ? ROUTE_DOCS[key as keyof typeof ROUTE_DOCS]
        : (OPEN_ROUTE_DOCS as Record<string, RouteDoc>)[key];
      if (!doc) throw new Error(`route ${key} has no row in api/openapi/routes.ts`);
      const schemas: Schemas = layer.stack.map(schemasOf).find(Boolean) ?? {};
      const statuses = errorStatuses(doc, schemas, authenticated);
      const ok = doc.ok ?? 200;
      const success = successBody(doc.returns);
      const responses: Json = {
        [ok]: {
          description: doc.summary,
          ...(success ? { content: { 'application/json': { schema: success } } } : {}),
        },
      };
      for (const status of statuses)
        responses[status] = {
          description: REASON[status] ?? 'Error',
          content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
        };
      const segment = layer.path.split('/')[layer.path.startsWith('/v1/') ? 2 : 1];
      const roles = authenticated && guard ? rolesOf(guard) : [];
      const operation: Json = {
        operationId: `${method.toLowerCase()}${layer.path.replace(/[/:-]+(\w)/g, (_, c: string) => c.toUpperCase())}`,
        summary: doc.summary,
        tags: [doc.tag ?? segment],
        ...(authenticated
          ? { security: [{ bearer: [] }], 'x-roles': roles, description: `Roles: ${roles.join(', ')}.` }
          : { security: [] }),
        parameters: [...parameters('path', schemas.params), ...parameters('query', schemas.query)],
        ...(schemas.body
          ? {
              requestBody: {
                required: !schemas.body.safeParse(undefined).success,
                content: { 'application/json': { schema: jsonSchema(schemas.body) } },
              },
            }
          : {}),
        responses,
      };
      (paths[openApiPath(layer.path)] ??= {})[method.toLowerCase()] = operation;
      operations.push({ method, path: layer.path, statuses: [ok, ...statuses] });
    }
  }
  const document: OpenApiDocument = {
    openapi: '3.1.0',
    info: {
      title: 'patchnanny API',
      version,
      description:
        'Durable, approval-gated Linux patch management. Every error is `{ error: { code, message, field? } }`. ' +
        'A method a path does not take answers 405 (with Allow), an unknown path 404. Roles per route are in `x-roles`.',
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    paths,
    components: {
      securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          description: 'A user token (pnu_…), a bootstrap admin token, an agent token or an enrolment token',
        },
      },
      schemas: {
        Error: {
          type: 'object',
          required: ['error'],
          properties: {
            error: {
              type: 'object',
              required: ['code', 'message'],
              properties: {
                code: { type: 'string', enum: ApiErrorCode.options },
                message: { type: 'string' },
                field: { type: 'string', description: 'The request field at fault, when there is one' },
              },
            },
          },
        },
      },
    },
  };
  return { document, operations };
}
