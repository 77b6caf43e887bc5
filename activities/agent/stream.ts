/**
 * Live output (issue 17, docs/review-desk.md "Live output"): a script's stdout and stderr go to
 * the API in chunks while it runs, never through Temporal; the activity result carries only each
 * stream's size and SHA-256 (StreamDigest). Measured before: a dry-run of 118 apt upgrades put
 * ~89 KB of output into the run's history, and the result was bounded only by MAX_OUTPUT.
 */
import { createHash, type Hash } from 'node:crypto';
import type { OutputChunk, OutputStepName, OutputStream, StreamDigest } from '../../contract';
import { HeadTail, utf8Head, utf8Tail } from './output';

/**
 * Posts one chunk. Resolves 'ok' when the API has it (also a repeat it already had), 'refused'
 * when the API will never take it (the run ended, is not this agent's, the key holds other
 * bytes); throws when it could not tell (network, 5xx): that chunk is tried again.
 */
export type PostChunk = (runId: string, chunk: OutputChunk) => Promise<'ok' | 'refused'>;

export interface StreamingOptions {
  /** Flush a stream's pending bytes at this size (64 KiB) … */
  chunkBytes?: number;
  /** … or this long after its first pending byte (500 ms), so a slow script's lines show at once. */
  flushMs?: number;
  /**
   * Per stream and step: the first half is sent as it comes, the last half at the end, the middle
   * dropped (its size is sent as the tail's `gapBefore`; the whole stream's SHA-256 still covers
   * every byte). 4 MiB: 100 times what an apt dist-upgrade of ~120 packages prints.
   */
  capBytes?: number;
  /** Bytes waiting to be posted at most; beyond it chunks are dropped and the output is undelivered. */
  queueBytes?: number;
  /** After the script has ended, how long undelivered chunks are still retried (30 s). */
  drainMs?: number;
}

const DEFAULTS = {
  chunkBytes: 64 * 1024,
  flushMs: 500,
  capBytes: 4 * 1024 * 1024,
  queueBytes: 16 * 1024 * 1024,
  drainMs: 30_000,
} satisfies Required<StreamingOptions>;

/** One stream's bytes on their way: cut into chunks on UTF-8 boundaries, hashed as they pass. */
class StreamSender {
  private readonly whole: Hash = createHash('sha256');
  private readonly kept: Hash = createHash('sha256');
  private total = 0;
  private keptBytes = 0;
  private headSent = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private seq = 0;
  private timer: NodeJS.Timeout | null = null;
  /** The bytes after the head: only the last `cap / 2` survive to be sent at the end. */
  private readonly tail: HeadTail;

  constructor(
    private readonly stream: OutputStream,
    private readonly o: Required<StreamingOptions>,
    private readonly emit: (c: Omit<OutputChunk, 'step' | 'attempt'>) => void,
  ) {
    this.tail = new HeadTail(0, Math.floor(o.capBytes / 2));
  }

  push(buf: Buffer): void {
    this.whole.update(buf);
    this.total += buf.length;
    const headRoom = Math.floor(this.o.capBytes / 2) - this.headSent;
    const head = headRoom > 0 ? buf.subarray(0, headRoom) : Buffer.alloc(0);
    if (head.length > 0) {
      // A copy: the pipe's read buffer is reused for the next read.
      this.pending.push(Buffer.from(head));
      this.pendingBytes += head.length;
      this.headSent += head.length;
      if (this.pendingBytes >= this.o.chunkBytes) this.flush(false);
      else this.timer ??= setTimeout(() => this.flush(false), this.o.flushMs);
    }
    if (head.length < buf.length) this.tail.push(buf.subarray(head.length));
  }

  /** Send what is pending; unless `final`, an incomplete UTF-8 character waits for its rest. */
  flush(final: boolean): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.pendingBytes === 0) return;
    const all = Buffer.concat(this.pending);
    const data = final ? all : utf8Head(all);
    this.pending = data.length < all.length ? [all.subarray(data.length)] : [];
    this.pendingBytes = all.length - data.length;
    if (data.length > 0) this.send(data, 0);
    if (!final && this.pendingBytes > 0) this.timer = setTimeout(() => this.flush(false), this.o.flushMs);
  }

  private send(data: Buffer, gapBefore: number): void {
    for (let at = 0; at < data.length; at += this.o.chunkBytes) {
      const part = data.subarray(at, at + this.o.chunkBytes);
      this.kept.update(part);
      this.keptBytes += part.length;
      this.emit({ stream: this.stream, seq: this.seq++, data: part, gapBefore: at === 0 ? gapBefore : 0 });
    }
  }

  /** The stream has ended: send the head's rest, then the kept tail after the gap. */
  finish(): StreamDigest {
    this.flush(true);
    if (this.tail.total > 0) {
      const kept = this.tail.cut ? utf8Tail(this.tail.last(this.tail.tailBytes)) : this.tail.whole()!;
      this.send(kept, this.tail.total - kept.length);
    }
    return {
      bytes: this.total,
      sha256: this.whole.digest('hex'),
      keptBytes: this.keptBytes,
      keptSha256: this.kept.digest('hex'),
    };
  }
}

/**
 * Both streams of one script execution, posted in order by one sender with retry and backoff.
 * Posting never fails the script: what could not be delivered makes `delivered` false.
 */
export class OutputStreamer {
  readonly stdout: { push(b: Buffer): void };
  readonly stderr: { push(b: Buffer): void };
  private readonly senders: Record<OutputStream, StreamSender>;
  private readonly queue: OutputChunk[] = [];
  private queuedBytes = 0;
  private delivered = true;
  private gaveUp = false;
  private wake: (() => void) | null = null;
  private finishing = false;
  private readonly done: Promise<void>;
  private drainUntil = Infinity;
  private readonly o: Required<StreamingOptions>;

  constructor(
    private readonly runId: string,
    private readonly step: OutputStepName,
    private readonly attempt: number,
    private readonly post: PostChunk,
    options: StreamingOptions = {},
    private readonly log: (line: string) => void = () => undefined,
  ) {
    this.o = { ...DEFAULTS, ...options };
    const enqueue = (c: Omit<OutputChunk, 'step' | 'attempt'>) => this.enqueue(c);
    this.senders = {
      stdout: new StreamSender('stdout', this.o, enqueue),
      stderr: new StreamSender('stderr', this.o, enqueue),
    };
    this.stdout = this.senders.stdout;
    this.stderr = this.senders.stderr;
    this.done = this.run();
  }

  private enqueue(c: Omit<OutputChunk, 'step' | 'attempt'>): void {
    if (this.gaveUp) return;
    if (this.queuedBytes + c.data.length > this.o.queueBytes) {
      // The API is away and the script keeps printing: memory stays bounded, the record says so.
      if (this.delivered) this.log(`run ${this.runId}: output queue full (${this.o.queueBytes} bytes); chunks dropped`);
      this.delivered = false;
      return;
    }
    this.queue.push({ ...c, step: this.step, attempt: this.attempt });
    this.queuedBytes += c.data.length;
    this.wake?.();
  }

  private async run(): Promise<void> {
    let backoff = 250;
    for (;;) {
      const next = this.queue[0];
      if (!next) {
        if (this.finishing) return;
        await new Promise<void>((r) => (this.wake = r));
        this.wake = null;
        continue;
      }
      let answer: 'ok' | 'refused' | 'retry';
      try {
        answer = await this.post(this.runId, next);
      } catch (err) {
        answer = 'retry';
        if (backoff === 250)
          this.log(
            `run ${this.runId}: posting output failed (${err instanceof Error ? err.message : String(err)}); retrying`,
          );
      }
      if (answer === 'retry') {
        if (Date.now() + backoff > this.drainUntil) return this.abandon('the API did not take it in time');
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 5000);
        continue;
      }
      backoff = 250;
      if (answer === 'refused') return this.abandon('the API refused a chunk');
      this.queue.shift();
      this.queuedBytes -= next.data.length;
    }
  }

  private abandon(why: string): void {
    if (this.queue.length > 0) this.log(`run ${this.runId}: ${this.queue.length} output chunks not delivered: ${why}`);
    this.delivered = false;
    this.gaveUp = true;
    this.queue.length = 0;
    this.queuedBytes = 0;
  }

  /** The script has ended and its pipes are closed: send the rest, wait (bounded) for delivery. */
  async finish(): Promise<{ stdout: StreamDigest; stderr: StreamDigest; delivered: boolean }> {
    const stdout = this.senders.stdout.finish();
    const stderr = this.senders.stderr.finish();
    this.finishing = true;
    this.drainUntil = Date.now() + this.o.drainMs;
    this.wake?.();
    await this.done;
    return { stdout, stderr, delivered: this.delivered && !this.gaveUp };
  }
}
