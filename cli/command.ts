/**
 * What every `patchnanny` command is made of: a row of the command table (cli/commands/index.ts)
 * with its usage text and options, and the shared pieces (the API client, tables, exit codes).
 * A command is one module; adding one is a file and a line in the table.
 */
import type { ParseArgsConfig } from 'node:util';
import { z } from 'zod';

/** Exit codes (README "CLI"): documented, stable, for scripts. */
export const EXIT = {
  ok: 0,
  /** The API refused (4xx), the run failed, or the user said no. */
  failed: 1,
  /** Bad command line. */
  usage: 2,
  /** The API could not be reached, or answered that it is unavailable (503). */
  unreachable: 3,
} as const;

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.failed,
    /** The API's error body, printed as it is under --json. */
    readonly body?: unknown,
  ) {
    super(message);
  }
}

export const usageError = (message: string) => new CliError(message, EXIT.usage);

type Options = NonNullable<ParseArgsConfig['options']>;

/** Options every command that talks to the API takes. */
export const API_OPTIONS = {
  'api-url': { type: 'string' },
  token: { type: 'string' },
  json: { type: 'boolean' },
} as const satisfies Options;

export interface CommandContext {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  /** The API, from --api-url/--token or PATCHNANNY_API_URL/PATCHNANNY_TOKEN (checked on first use). */
  api: ApiClient;
  json: boolean;
  out: (line: string) => void;
  /** Progress and prompts: stderr, so stdout stays the answer (and parseable under --json). */
  err: (text: string) => void;
}

export interface Command {
  name: string;
  /** One line for the command list. */
  summary: string;
  /** The full --help text. */
  usage: string;
  options?: Options;
  positionals?: boolean;
  /** Does it talk to the API (then it takes --api-url, --token, --json)? */
  api?: boolean;
  run(ctx: CommandContext): Promise<number | void>;
}

const ErrorBody = z.object({ error: z.object({ code: z.string(), message: z.string() }) });

export interface ApiClient {
  call<T>(method: string, path: string, schema: z.ZodType<T>, body?: unknown): Promise<T>;
}

export function apiClient(apiUrl: string | undefined, token: string | undefined): ApiClient {
  return {
    async call<T>(method: string, path: string, schema: z.ZodType<T>, body?: unknown): Promise<T> {
      if (!apiUrl) throw usageError('the API URL is required: --api-url or PATCHNANNY_API_URL');
      if (!token) throw usageError('a token is required: --token or PATCHNANNY_TOKEN');
      let res: Response;
      try {
        res = await fetch(new URL(path, apiUrl), {
          method,
          headers: {
            authorization: `Bearer ${token}`,
            ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          },
          body: body !== undefined ? JSON.stringify(body) : undefined,
          signal: AbortSignal.timeout(30_000),
        });
      } catch (err) {
        const cause = (err as { cause?: { code?: string; message?: string } }).cause;
        throw new CliError(
          `cannot reach ${apiUrl}: ${cause?.code ?? cause?.message ?? (err as Error).message}`,
          EXIT.unreachable,
        );
      }
      const text = await res.text();
      let json: unknown = null;
      try {
        json = text ? JSON.parse(text) : null;
      } catch {
        /* not JSON: reported below */
      }
      if (!res.ok) {
        const e = ErrorBody.safeParse(json).data?.error;
        throw new CliError(
          `${method} ${path}: ${res.status} ${e ? `${e.code}: ${e.message}` : text.slice(0, 200)}`,
          res.status === 503 ? EXIT.unreachable : EXIT.failed,
          json,
        );
      }
      const parsed = schema.safeParse(json);
      if (!parsed.success) throw new CliError(`${method} ${path}: unexpected answer: ${parsed.error.message}`);
      return parsed.data;
    },
  };
}

/** A plain text table: a header row and columns padded to their widest cell. */
export function table(headers: string[], rows: (string | number | boolean | null | undefined)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => (c === null || c === undefined ? '-' : String(c))))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => r[i].length)));
  return cells
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i])))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** A string option, or a usage error naming it. */
export function required(ctx: CommandContext, name: string): string {
  const v = ctx.values[name];
  if (typeof v !== 'string' || v === '') throw usageError(`--${name} is required`);
  return v;
}

/** The n-th positional argument, or a usage error naming it. */
export function positional(ctx: CommandContext, n: number, what: string): string {
  const v = ctx.positionals[n];
  if (!v) throw usageError(`${what} is required`);
  return v;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Loose shapes of the API's answers: what the CLI shows, the rest passed through for --json. */
export const Run = z
  .object({
    id: z.string(),
    agentId: z.string(),
    mode: z.string(),
    phase: z.string(),
    outcome: z.string().nullable(),
    failureReason: z.string().nullable().optional(),
    requestedBy: z.string().nullable().optional(),
    planHash: z.string().nullable(),
    approvedBy: z.string().nullable().optional(),
    container: z.unknown().optional(),
    createdAt: z.string().nullable().optional(),
    plan: z
      .array(
        z
          .object({
            name: z.string(),
            current: z.string().nullable().optional(),
            candidate: z.string().nullable().optional(),
          })
          .loose(),
      )
      .optional()
      .default([]),
  })
  .loose();
export type Run = z.infer<typeof Run>;

export function showPlan(ctx: CommandContext, run: Run): void {
  if (run.plan.length === 0) ctx.out('  (nothing to update)');
  for (const p of run.plan) ctx.out(`  ${p.name} ${p.current ?? '(new)'} -> ${p.candidate ?? ''}`);
}
