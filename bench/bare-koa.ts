/**
 * Scenario 4's baseline (forked by run.ts): a bare Koa app, no auth, no database, whose routes
 * return the same JSON bodies the real API returned for GET /v1/runs/:id and GET /v1/runs.
 * Koa serialises the objects per request, as it does for the real API.
 */
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import { tell } from './ipc';

const bodies = JSON.parse(readFileSync(process.argv[2], 'utf8')) as Record<string, unknown>;
const app = new Koa();
app.use((ctx) => {
  const body = bodies[ctx.path];
  if (body === undefined) ctx.status = 404;
  else ctx.body = body;
});
const server = app.listen(0, '127.0.0.1', () => {
  tell({ type: 'ready', workers: 0, startMs: 0, port: (server.address() as AddressInfo).port });
});
process.on('disconnect', () => process.exit(0));
