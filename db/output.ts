/**
 * A script's output as its agent streams it (issue 17, docs/review-desk.md "Live output"):
 * `run_output_chunks`, one row a chunk, keyed by run, step, activity attempt, stream and sequence.
 * The agent writes them through the API while the script runs; the API joins them with the
 * digests the activity returned through Temporal (`run_output.digests`) to say whether the stored
 * output is what the agent hashed.
 */
import { createHash } from 'node:crypto';
import type { OutputChunk, OutputStepName, OutputStream, StreamDigest } from '../contract';
import type { Db } from './index';

export interface OutputChunkRow {
  id: string; // bigint: arrival order, the followers' cursor
  run_id: string;
  step: OutputStepName;
  attempt: number;
  stream: OutputStream;
  seq: number;
  data: Buffer;
  gap_before: string; // bigint
  created_at: Date;
}

/** A chunk to store: the agent's chunk and the run it belongs to. */
export type NewChunk = OutputChunk & { runId: string };

const chunks = (db: Db) => db<OutputChunkRow>('run_output_chunks');

/** A chunk as its row is stored (without the id and time the database gives it). */
export const chunkRow = (c: NewChunk): Omit<OutputChunkRow, 'id' | 'created_at'> => ({
  run_id: c.runId,
  step: c.step,
  attempt: c.attempt,
  stream: c.stream,
  seq: c.seq,
  data: c.data,
  gap_before: String(c.gapBefore),
});

/**
 * Store a chunk once: 'stored' the first time, 'duplicate' when the very same chunk is already
 * there (a retried POST whose answer was lost), 'conflict' when different bytes hold its key.
 */
export async function storeChunk(db: Db, c: NewChunk): Promise<'stored' | 'duplicate' | 'conflict'> {
  const inserted = await chunks(db)
    .insert(chunkRow(c))
    .onConflict(['run_id', 'step', 'attempt', 'stream', 'seq'])
    .ignore()
    .returning('id');
  if (inserted.length === 1) return 'stored';
  const existing = await chunks(db)
    .where({ run_id: c.runId, step: c.step, attempt: c.attempt, stream: c.stream, seq: c.seq })
    .first('data', 'gap_before');
  return existing && existing.data.equals(c.data) && Number(existing.gap_before) === c.gapBefore
    ? 'duplicate'
    : 'conflict';
}

/** A run's chunks after the cursor (a chunk id), in arrival order; `step` narrows them. */
export async function chunksAfter(
  db: Db,
  runId: string,
  opts: { step?: OutputStepName; after?: number; limit?: number },
): Promise<OutputChunkRow[]> {
  const q = chunks(db)
    .where({ run_id: runId })
    .andWhere('id', '>', String(opts.after ?? 0))
    .orderBy('id')
    .limit(opts.limit ?? 1000);
  if (opts.step) q.andWhere({ step: opts.step });
  return q;
}

/** One stream of one attempt as stored: its chunks in sequence order. */
export async function streamChunks(
  db: Db,
  runId: string,
  step: OutputStepName,
  attempt: number,
  stream: OutputStream,
): Promise<OutputChunkRow[]> {
  return chunks(db).where({ run_id: runId, step, attempt, stream }).orderBy('seq');
}

/** The newest attempt that has stored output for a step (the one a live view shows). */
export async function latestAttempt(db: Db, runId: string, step: OutputStepName): Promise<number | null> {
  const row = await chunks(db).where({ run_id: runId, step }).max<{ max: number | null }>('attempt as max').first();
  return row?.max ?? null;
}

export interface StoredStream {
  /** The stored bytes in order, with a note where the agent dropped the middle. */
  data: Buffer;
  storedBytes: number;
  /** Bytes the agent dropped between its head and tail (the per-step cap). */
  droppedBytes: number;
  /** Every sequence number from 0 to the last is there. */
  contiguous: boolean;
  /** SHA-256 of the stored bytes (without the note). */
  sha256: string;
}

/** Join a stream's chunks; the bytes are hashed as stored, the caller compares with the digest. */
export function joinStream(rows: OutputChunkRow[]): StoredStream {
  const hash = createHash('sha256');
  const parts: Buffer[] = [];
  let dropped = 0;
  let contiguous = true;
  rows.forEach((r, i) => {
    if (r.seq !== i) contiguous = false;
    const gap = Number(r.gap_before);
    if (gap > 0) {
      dropped += gap;
      parts.push(Buffer.from(`\n…[${gap} bytes cut]…\n`));
    }
    hash.update(r.data);
    parts.push(r.data);
  });
  const data = Buffer.concat(parts);
  const storedBytes = rows.reduce((n, r) => n + r.data.length, 0);
  return { data, storedBytes, droppedBytes: dropped, contiguous, sha256: hash.digest('hex') };
}

/**
 * Whether the stored stream is exactly what the agent sent and hashed: every chunk there in
 * order, the kept bytes' hash and size as reported, and the dropped bytes accounting for the rest.
 */
export function verifyStream(stored: StoredStream, digest: StreamDigest): boolean {
  return (
    stored.contiguous &&
    stored.storedBytes === digest.keptBytes &&
    stored.sha256 === digest.keptSha256 &&
    stored.storedBytes + stored.droppedBytes === digest.bytes
  );
}

/** A run record's view of a stream: at most about 96 KB of its text (head and tail), as before issue 17. */
export async function storedText(
  db: Db,
  runId: string,
  step: OutputStepName,
  attempt: number,
  stream: OutputStream,
  maxBytes = 96 * 1024,
): Promise<string> {
  const { data } = joinStream(await streamChunks(db, runId, step, attempt, stream));
  if (data.length <= maxBytes) return data.toString('utf8');
  const half = Math.floor(maxBytes / 2);
  const cut = data.length - 2 * half;
  return `${data.subarray(0, half).toString('utf8')}\n…[${cut} bytes cut: GET /v1/runs/${runId}/output has it all]…\n${data.subarray(data.length - half).toString('utf8')}`;
}
