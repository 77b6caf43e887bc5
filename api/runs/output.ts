/**
 * Live output, out of Temporal history (issue 17, docs/review-desk.md "Live output"). The agent
 * posts its script's output here while the script runs; admins and the review page read it
 * whole, long-poll it, or follow it as server-sent events. The activity result that travels
 * through Temporal carries only each stream's size and SHA-256 and the attempt, recorded in
 * `run_output`; this module joins the two and says whether the stored output is what the agent
 * hashed (`verified`).
 */
import { PassThrough } from 'node:stream';
import type { Context } from 'koa';
import type { OutputStepName, OutputStream, RunPhase } from '../../contract';
import type { Db } from '../../db';
import {
  chunksAfter,
  joinStream,
  latestAttempt,
  storeChunk,
  streamChunks,
  verifyStream,
  type OutputChunkRow,
} from '../../db/output';
import { getRun, getRunRecord, type RunOutputRow } from '../../db/runs';
import { ApiError, notFound } from '../errors';
import type { OutputQuery, PostOutputBody } from './schema';

/** The phases a step's script runs in: a chunk for a step that cannot be running is refused (409). */
const RUNS_IN: Record<OutputStepName, readonly RunPhase[]> = {
  plan: ['pending', 'queued', 'planning'],
  replan: ['queued', 'applying'],
  apply: ['queued', 'applying'],
};

/** How often a follower looks for new chunks: a database read per follower and interval. */
const FOLLOW_POLL_MS = 250;
/** An SSE comment this often keeps proxies from closing a quiet stream (an apply can be silent for minutes). */
const KEEPALIVE_MS = 15_000;

const STREAMS: readonly OutputStream[] = ['stdout', 'stderr'];

const chunkView = (c: OutputChunkRow) => ({
  id: Number(c.id),
  step: c.step,
  attempt: c.attempt,
  stream: c.stream,
  seq: c.seq,
  // Agents cut chunks on UTF-8 character boundaries, so each chunk decodes on its own.
  text: c.data.toString('utf8'),
  gapBefore: Number(c.gap_before),
});
export type OutputChunk = ReturnType<typeof chunkView>;

export function outputService({ db }: { db: Db }) {
  /**
   * Store one chunk from the run's own agent. Any other agent is told the run does not exist
   * (404, the answer an unknown run gets: nothing about other hosts' runs leaks).
   */
  async function post(runId: string, agentId: string, body: PostOutputBody): Promise<{ stored: boolean }> {
    const run = await getRun(db, runId);
    if (!run || run.agent_id !== agentId) throw notFound(`run ${runId}`);
    if (run.outcome) throw new ApiError('conflict', `run ${runId} already ended (${run.outcome}): no more output`);
    if (!RUNS_IN[body.step].includes(run.phase))
      throw new ApiError('conflict', `run ${runId} is ${run.phase}: its ${body.step} step is not running`, 'step');
    const data = Buffer.from(body.data, 'base64');
    const result = await storeChunk(db, {
      runId,
      step: body.step,
      attempt: body.attempt,
      stream: body.stream,
      seq: body.seq,
      data,
      gapBefore: body.gapBefore,
    });
    if (result === 'conflict')
      throw new ApiError(
        'conflict',
        `chunk ${body.seq} of ${body.step} attempt ${body.attempt} ${body.stream} was already stored with different content`,
        'seq',
      );
    return { stored: result === 'stored' };
  }

  /** A step's output: the accepted attempt once the step is recorded, the newest while it runs. */
  async function stepOutput(runId: string, step: OutputStepName, row: RunOutputRow | undefined) {
    // Recorded before issue 17: the text is in the row, there is nothing to verify.
    if (row && row.attempt === null) {
      return {
        step,
        attempt: null,
        done: true,
        delivered: null,
        verified: null,
        streams: {
          stdout: { text: row.stdout, bytes: Buffer.byteLength(row.stdout), verified: null },
          stderr: { text: row.stderr, bytes: Buffer.byteLength(row.stderr), verified: null },
        },
      };
    }
    const attempt = row?.attempt ?? (await latestAttempt(db, runId, step));
    if (attempt === null) return null;
    const streams = Object.fromEntries(
      await Promise.all(
        STREAMS.map(async (s) => {
          const stored = joinStream(await streamChunks(db, runId, step, attempt, s));
          const digest = row?.digests?.[s];
          return [
            s,
            {
              text: stored.data.toString('utf8'),
              storedBytes: stored.storedBytes,
              droppedBytes: stored.droppedBytes,
              storedSha256: stored.sha256,
              /** What the agent reported through Temporal: the whole stream, and the part it kept. */
              bytes: digest?.bytes ?? null,
              sha256: digest?.sha256 ?? null,
              verified: digest ? verifyStream(stored, digest) : null,
            },
          ] as const;
        }),
      ),
    ) as unknown as Record<OutputStream, { text: string; verified: boolean | null }>;
    const done = row !== undefined;
    return {
      step,
      attempt,
      done,
      delivered: row?.delivered ?? null,
      // Complete and matching the agent's digests, and the agent says nothing went undelivered.
      verified: done ? row.delivered === true && STREAMS.every((s) => streams[s].verified === true) : null,
      streams,
    };
  }

  /** Every step's output of a run (or one step's), joined and verified. */
  async function record(runId: string, only?: OutputStepName) {
    const run = await getRun(db, runId);
    if (!run) throw notFound(`run ${runId}`);
    const { output } = await getRunRecord(db, runId);
    const steps: OutputStepName[] = only ? [only] : ['plan', 'replan', 'apply'];
    const out = [];
    for (const step of steps) {
      const s = await stepOutput(
        runId,
        step,
        output.find((o) => o.step === step),
      );
      if (s) out.push(s);
    }
    const [last] = await db('run_output_chunks').where({ run_id: runId }).max<{ max: string | null }[]>('id as max');
    return { output: out, next: Number(last?.max ?? 0), ended: run.outcome !== null };
  }

  /** Chunks after a cursor; `waitMs` long-polls for the first one. */
  async function after(runId: string, q: OutputQuery) {
    const run = await getRun(db, runId);
    if (!run) throw notFound(`run ${runId}`);
    const deadline = Date.now() + q.waitMs;
    for (;;) {
      const rows = await chunksAfter(db, runId, { step: q.step, after: q.after });
      const ended = (await getRun(db, runId))?.outcome != null;
      if (rows.length > 0 || ended || Date.now() >= deadline) {
        const chunks = rows.map(chunkView);
        return { chunks, next: chunks.length ? chunks[chunks.length - 1].id : (q.after ?? 0), ended };
      }
      await new Promise((r) => setTimeout(r, Math.min(FOLLOW_POLL_MS, deadline - Date.now())));
    }
  }

  /**
   * Server-sent events: each chunk as `event: chunk` with its id (a reconnecting EventSource
   * resumes after Last-Event-ID), then `event: end` with the step's verified record once the
   * step is recorded or the run has ended.
   */
  async function follow(ctx: Context, runId: string, q: OutputQuery): Promise<void> {
    const run = await getRun(db, runId);
    if (!run) throw notFound(`run ${runId}`);
    const lastEventId = Number(ctx.get('last-event-id'));
    let cursor = Number.isInteger(lastEventId) && lastEventId > 0 ? lastEventId : (q.after ?? 0);
    const body = new PassThrough();
    ctx.status = 200;
    ctx.set('content-type', 'text/event-stream; charset=utf-8');
    ctx.set('cache-control', 'no-cache');
    ctx.set('x-accel-buffering', 'no');
    ctx.body = body;
    let closed = false;
    ctx.req.once('close', () => (closed = true));
    const send = (event: string, data: unknown, id?: number) =>
      body.write(`${id !== undefined ? `id: ${id}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    void (async () => {
      let quietSince = Date.now();
      try {
        while (!closed) {
          const rows = await chunksAfter(db, runId, { step: q.step, after: cursor });
          for (const c of rows) send('chunk', chunkView(c), (cursor = Number(c.id)));
          if (rows.length > 0) quietSince = Date.now();
          if (rows.length === 1000) continue; // more waiting: no pause
          if (await ended(runId, q.step)) {
            send('end', await record(runId, q.step));
            break;
          }
          if (Date.now() - quietSince > KEEPALIVE_MS) {
            body.write(': keep-alive\n\n');
            quietSince = Date.now();
          }
          await new Promise((r) => setTimeout(r, FOLLOW_POLL_MS));
        }
      } catch (err) {
        send('error', { message: err instanceof Error ? err.message : String(err) });
      } finally {
        body.end();
      }
    })();
  }

  /** A followed step is over when it is recorded (its result came back), or the run has ended. */
  async function ended(runId: string, step?: OutputStepName): Promise<boolean> {
    const run = await getRun(db, runId);
    if (!run || run.outcome !== null) return true;
    if (!step) return false;
    const row: { id: string } | undefined = await db<RunOutputRow>('run_output')
      .where({ run_id: runId, step })
      .first('id');
    return row !== undefined;
  }

  return { post, record, after, follow };
}
export type OutputService = ReturnType<typeof outputService>;
