/**
 * What the OpenAPI document says of each route beyond what the route itself carries. The
 * request schemas and the roles are NOT here: they are read off the router's layers (the
 * `validate` and `allow` middleware each route is built from), so the document describes what a
 * route really checks. This table adds a summary, the success status and body, and the
 * domain errors a route's service can throw. It must have a row for every key of ROUTE_ROLES
 * (the type says so: a route added to the role table without a row here does not compile), and
 * test/api/openapi.test.ts checks it against every layer the Koa routers really have.
 *
 * Errors every route of a kind can answer are added by the generator, not listed here: 401 and
 * 403 (authenticated routes), 400 (a route that validates anything), 413 and 415 (a route that
 * reads a body), 404 (a route with path parameters: the thing it names may not exist), 500.
 */
import type { ApiErrorCode } from '../../contract';
import type { RouteKey } from '../roles';

export interface RouteDoc {
  summary: string;
  /** Tag the route is grouped under (default: the path's first segment after /v1). */
  tag?: string;
  /** The success status (default 200). */
  ok?: 200 | 201 | 202 | 204;
  /**
   * The success body: the top-level keys of its JSON object, each an object or (`[]` suffix)
   * an array of objects, e.g. `['run']` for `{ "run": {…} }`; none for 204.
   */
  returns?: string[];
  /** Domain errors beyond the ones the generator adds for every route of its kind. */
  errors?: ApiErrorCode[];
}

/** Routes outside authentication (no bearer token). */
export const OPEN_ROUTE_DOCS = {
  'GET /healthz': {
    summary: 'Liveness and readiness: 200 when PostgreSQL and Temporal answer, 503 otherwise',
    tag: 'health',
    returns: ['ok', 'db', 'temporal'],
    errors: ['unavailable'],
  },
  'GET /v1/openapi.json': {
    summary: 'This document (OpenAPI 3.1), generated from the zod schemas the routes validate with',
    tag: 'meta',
    returns: ['openapi', 'info', 'paths', 'components'],
  },
} as const satisfies Record<string, RouteDoc>;
export type OpenRouteKey = keyof typeof OPEN_ROUTE_DOCS;

const TEMPORAL: ApiErrorCode[] = ['unavailable'];

export const ROUTE_DOCS: Record<RouteKey, RouteDoc> = {
  'POST /v1/agents': {
    summary: 'Register an agent (with an enrolment token, or as an admin); returns its token once',
    ok: 201,
    returns: ['agent', 'token'],
    errors: ['conflict'],
  },
  'GET /v1/agents': { summary: 'List agents', returns: ['agents[]'] },
  'GET /v1/agents/:id': { summary: 'One agent (an agent token may read only itself)', returns: ['agent'] },
  'PATCH /v1/agents/:id': { summary: "Change an agent's settings (fourEyes)", returns: ['agent'] },
  'PUT /v1/agents/:id/labels': {
    summary: "Replace an agent's labels (admin; audited with before and after)",
    returns: ['agent'],
  },
  'POST /v1/agents/:id/accept': {
    summary: 'Accept a pending agent',
    returns: ['agent'],
    errors: ['conflict'],
  },
  'DELETE /v1/agents/:id': {
    summary: 'Revoke an agent; its unfinished runs are ended',
    returns: ['agent', 'runsEnded'],
    errors: ['conflict', ...TEMPORAL],
  },
  'GET /v1/agents/:id/containers': { summary: "A Proxmox VE node's containers", returns: ['containers[]'] },
  'PUT /v1/agents/:id/containers': {
    summary: "A Proxmox VE node's agent reports its containers",
    returns: ['containers[]'],
  },
  'PUT /v1/agents/:id/containers/:vmid/defaults': {
    summary: "An admin's defaults for a container's runs (startIfStopped, snapshot) where neither run nor window says",
    returns: ['container'],
  },
  'GET /v1/reviews': {
    summary: 'Runs awaiting approval grouped by identical plan (plan hash), the longest-waiting group first',
    returns: ['groups[]'],
  },
  'GET /v1/reviews/diff': {
    summary: "What one run's plan has that another's has not, and the versions that differ",
    returns: ['a', 'b', 'onlyInA[]', 'onlyInB[]', 'differing[]'],
    // The runs it names are in the query, not the path: their absence is a 404 all the same.
    errors: ['not_found', 'conflict'],
  },
  'POST /v1/reviews/:planHash/approve': {
    summary: 'Approve each run of a plan group with its own signed statement; each run refuses drift itself',
    returns: ['decided[]', 'refused[]'],
    errors: ['conflict', ...TEMPORAL],
  },
  'POST /v1/reviews/:planHash/reject': {
    summary: 'Reject each run of a plan group, with a reason',
    returns: ['decided[]', 'refused[]'],
    errors: ['conflict', ...TEMPORAL],
  },
  'GET /v1/compliance': {
    summary: 'The fleet at a glance: hosts up to date, pending, failing, unreachable, pending reboot',
    tag: 'compliance',
  },
  'POST /v1/enrolment-tokens': {
    summary: 'Make an enrolment token (shown once)',
    ok: 201,
    returns: ['enrolmentToken', 'token'],
  },
  'GET /v1/enrolment-tokens': { summary: 'List enrolment tokens (never the secrets)', returns: ['enrolmentTokens[]'] },
  'DELETE /v1/enrolment-tokens/:id': { summary: 'Revoke an enrolment token', returns: ['enrolmentToken'] },
  'GET /v1/audit': { summary: 'The hash-chained audit trail, oldest first, paged', returns: ['entries[]', 'next'] },
  'POST /v1/keys': {
    summary: 'Register an approver public key (Ed25519)',
    ok: 201,
    returns: ['key'],
    errors: ['conflict'],
  },
  'GET /v1/keys': { summary: 'List approver keys', returns: ['keys[]'] },
  'DELETE /v1/keys/:id': {
    summary: 'Revoke an approver key; runs waiting for approval stop counting it too',
    returns: ['key'],
    errors: TEMPORAL,
  },
  'GET /v1/agents/:agentId/exceptions': { summary: "An agent's package exceptions", returns: ['exceptions[]'] },
  'POST /v1/agents/:agentId/exceptions': {
    summary: 'Hold a package (or glob) back on an agent',
    ok: 201,
    returns: ['exception'],
    errors: ['conflict'],
  },
  'PATCH /v1/agents/:agentId/exceptions/:id': { summary: 'Change an exception', returns: ['exception'] },
  'DELETE /v1/agents/:agentId/exceptions/:id': { summary: 'Remove an exception', ok: 204 },
  'GET /v1/scripts': { summary: 'The signed patch scripts', returns: ['scripts[]'] },
  'GET /v1/scripts/:name': { summary: 'One patch script with its signature', returns: ['script'] },
  'PUT /v1/hooks/:name': {
    summary: 'Upload or replace a hook script (content, signatures); runs pin its SHA-256 when resolved',
    returns: ['hook'],
  },
  'GET /v1/hooks': { summary: 'The hook scripts (name, sha256)', returns: ['hooks[]'] },
  'GET /v1/hooks/:name': { summary: 'One hook script with its content and signatures', returns: ['hook'] },
  'POST /v1/runs': {
    summary: 'Start a run (dry-run or apply) on an agent or one of its containers',
    ok: 202,
    returns: ['run'],
    errors: ['conflict', ...TEMPORAL],
  },
  'GET /v1/runs': { summary: 'List runs, newest first, paged with before', returns: ['runs[]', 'next'] },
  'GET /v1/runs/:id': { summary: 'One run with its plan and results', returns: ['run'] },
  'POST /v1/runs/:id/approve': {
    summary: "Approve a run's plan with a signed approval (docs/signed-approvals.md)",
    returns: ['status'],
    errors: ['conflict', ...TEMPORAL],
  },
  'POST /v1/runs/:id/reject': {
    summary: "Reject a run's plan",
    returns: ['status'],
    errors: ['conflict', ...TEMPORAL],
  },
  'POST /v1/runs/:id/cancel': {
    summary: 'Cancel a run (a requester only their own)',
    ok: 202,
    returns: ['cancelling'],
    errors: ['conflict', ...TEMPORAL],
  },
  'POST /v1/runs/:id/output': {
    summary:
      "The run's own agent posts a chunk of its script's output (idempotent per step, attempt, stream and seq; docs/review-desk.md)",
    errors: ['conflict'],
  },
  'GET /v1/runs/:id/output': {
    summary:
      "A run's script output per step, verified against the agent's SHA-256; with after/waitMs a long-poll of new chunks, with follow=1 server-sent events",
    returns: ['output[]'],
  },
  'POST /v1/windows': {
    summary: 'Create a maintenance window (a Temporal schedule)',
    ok: 201,
    returns: ['window'],
    errors: TEMPORAL,
  },
  'GET /v1/windows': { summary: 'List maintenance windows', returns: ['windows[]'] },
  'GET /v1/windows/:id': { summary: 'One maintenance window with its next times', returns: ['window'] },
  'PATCH /v1/windows/:id': { summary: 'Change a window', returns: ['window'], errors: TEMPORAL },
  'DELETE /v1/windows/:id': { summary: 'Delete a window and its schedule', ok: 204, errors: TEMPORAL },
  'POST /v1/windows/:id/pause': { summary: 'Pause a window', returns: ['window'], errors: TEMPORAL },
  'POST /v1/windows/:id/resume': { summary: 'Resume a window', returns: ['window'], errors: TEMPORAL },
  'POST /v1/windows/:id/trigger': {
    summary: 'Open a window now (outside its schedule)',
    ok: 202,
    returns: ['triggered'],
    errors: TEMPORAL,
  },
  'POST /v1/baselines': {
    summary: 'Create a patch baseline: auto-approval rules for the agents a selector matches',
    ok: 201,
    returns: ['baseline'],
    errors: ['conflict'],
  },
  'GET /v1/baselines': { summary: 'List patch baselines', returns: ['baselines[]'] },
  'GET /v1/baselines/:id': { summary: 'One patch baseline', returns: ['baseline'] },
  'PUT /v1/baselines/:id': { summary: 'Replace a patch baseline', returns: ['baseline'], errors: ['conflict'] },
  'DELETE /v1/baselines/:id': { summary: 'Delete a patch baseline (runs it approved keep its name)', ok: 204 },
  // Rollouts (docs/rollouts.md): waves, concurrency and one error budget over many hosts.
  'POST /v1/rollouts': {
    summary: 'Start a rollout: resolve and record its targets, then run them in waves',
    ok: 201,
    returns: ['rollout'],
    errors: TEMPORAL,
  },
  'GET /v1/rollouts': { summary: 'List rollouts (newest first) with progress and budget', returns: ['rollouts[]'] },
  'GET /v1/rollouts/:id': {
    summary: 'One rollout: waves, each host with its run and outcome, the error budget',
    returns: ['rollout'],
  },
  'POST /v1/rollouts/:id/pause': {
    summary: 'Pause a rollout: no new host starts, running ones go on',
    ok: 202,
    returns: ['rollout'],
    errors: ['conflict', ...TEMPORAL],
  },
  'POST /v1/rollouts/:id/resume': {
    summary: 'Resume a paused rollout',
    ok: 202,
    returns: ['rollout'],
    errors: ['conflict', ...TEMPORAL],
  },
  'POST /v1/rollouts/:id/abort': {
    summary: 'Abort a rollout: stop scheduling, cancel runs not yet applying, let applies finish',
    ok: 202,
    returns: ['rollout'],
    errors: ['conflict', ...TEMPORAL],
  },
  'POST /v1/rollouts/:id/approve': {
    summary: 'Approve a plan for a plan-group rollout: one signed approval covers every host whose plan has that hash',
    returns: ['approval', 'approved[]', 'refused[]'],
    errors: ['conflict', ...TEMPORAL],
  },
  'GET /v1/users': { summary: 'List users', returns: ['users[]'] },
  'POST /v1/users': { summary: 'Create a user', ok: 201, returns: ['user'], errors: ['conflict'] },
  'GET /v1/users/:name': { summary: 'One user', returns: ['user'] },
  'PATCH /v1/users/:name': {
    summary:
      "Change a user's role, display name or disabled flag (disabled or demoted: open runs stop counting their keys)",
    returns: ['user'],
    errors: TEMPORAL,
  },
  'POST /v1/users/:name/tokens': {
    summary: 'Make an API token for a user (shown once)',
    ok: 201,
    returns: ['id', 'token'],
    errors: ['conflict'],
  },
  'DELETE /v1/users/:name/tokens/:id': { summary: "Revoke a user's token", returns: ['token'] },
  'POST /v1/webhooks': {
    summary: 'Subscribe a URL to events; returns the signing secret once',
    tag: 'webhooks',
    ok: 201,
    returns: ['webhook', 'secret'],
  },
  'GET /v1/webhooks': { summary: 'List webhook subscriptions (never their secrets)', returns: ['webhooks[]'] },
  'DELETE /v1/webhooks/:id': { summary: 'Delete a subscription (its delivery log stays)', ok: 204 },
  'GET /v1/webhooks/:id/deliveries': {
    summary: "A subscription's delivery log, newest first: status, attempts, last error",
    returns: ['deliveries[]'],
  },
};
