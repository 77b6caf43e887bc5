/**
 * The review page (issue 17), served by the API at `/`: one HTML file, one stylesheet and one
 * script compiled from desk/ (plain TypeScript, no framework, nothing from a CDN). The files need
 * no token; everything they show comes from the /v1 API with the token the person signs in with.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Middleware } from 'koa';

/** Where the page links a run's workflow: the Temporal UI and the namespace runs live in. */
export interface DeskConfig {
  temporalUiUrl: string;
  namespace: string;
}

/** The built page (build step: tsc -p desk, scripts/dev/build-desk.ts copies the HTML and CSS). */
export const DESK_STATIC = path.join(__dirname, 'static');

const FILES = [
  { route: '/', file: 'index.html', type: 'text/html; charset=utf-8' },
  { route: '/desk/page.js', file: 'page.js', type: 'text/javascript; charset=utf-8' },
  { route: '/desk/desk.css', file: 'desk.css', type: 'text/css; charset=utf-8' },
] as const;

/**
 * Same-origin everything, no inline script or style, no framing: the page holds a bearer token
 * and an approver's key in memory, so nothing else may run in it.
 */
const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

/**
 * A plain middleware rather than a Router: anything but a GET of these paths passes straight on.
 * (With a @koa/router Router here, test/api/boundaries' gzip-bomb request ended in ECONNRESET
 * instead of its 413 twice in a row when run alone; with this middleware it passed alone but failed
 * the same way once more under heavy machine load: a timing race, cause not pinned down.)
 */
export function deskPages(config: DeskConfig): Middleware {
  // Read once at start: a missing build fails the start, not the first visitor.
  const files = new Map<string, { type: string; body: Buffer | string }>(
    FILES.map(({ route, file, type }) => [route, { type, body: readFileSync(path.join(DESK_STATIC, file)) }]),
  );
  files.set('/desk/config.json', { type: 'application/json; charset=utf-8', body: JSON.stringify(config) });
  return async (ctx, next) => {
    const file = ctx.method === 'GET' || ctx.method === 'HEAD' ? files.get(ctx.path) : undefined;
    if (!file) {
      await next();
      return;
    }
    ctx.set(SECURITY_HEADERS);
    ctx.type = file.type;
    ctx.body = file.body;
  };
}
