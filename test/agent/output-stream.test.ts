import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { OutputStreamer } from '../../activities/agent/stream';
import type { OutputChunk, OutputStream } from '../../contract';
import { chunkRow, joinStream, verifyStream, type OutputChunkRow } from '../../db/output';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Chunks as the API stores them, so the API's own join and verification judge what was sent. */
const asRows = (chunks: OutputChunk[], stream: OutputStream): OutputChunkRow[] =>
  chunks
    .filter((c) => c.stream === stream)
    .sort((a, b) => a.seq - b.seq)
    .map((c, i) => ({ ...chunkRow({ ...c, runId: 'r' }), id: String(i + 1), created_at: new Date() }));

/**
 * The agent's side of live output (activities/agent/stream.ts): what it sends when the API is
 * flaky, away, or the output is larger than the per-step cap. The end-to-end behaviour with real
 * agents is in test/runs/live-output.test.ts.
 */
describe('the agent streams output to the API without ever failing the script', () => {
  it('posts that fail for a while are retried in order; everything arrives once and verifies', async () => {
    const got: OutputChunk[] = [];
    let failures = 3;
    const s = new OutputStreamer(
      'r',
      'apply',
      1,
      (_run, c) => {
        if (failures-- > 0) return Promise.reject(new Error('connection refused'));
        got.push(c);
        return Promise.resolve('ok' as const);
      },
      { chunkBytes: 1000, flushMs: 20 },
    );
    const lines = Array.from({ length: 300 }, (_, i) => `line ${i} ✓ done\n`).join('');
    const bytes = Buffer.from(lines);
    // Pushed in odd-sized pieces that split the multi-byte ✓ across reads.
    for (let at = 0; at < bytes.length; at += 333) s.stderr.push(bytes.subarray(at, at + 333));
    const r = await s.finish();
    assert.equal(r.delivered, true);
    assert.deepEqual(r.stderr, {
      bytes: bytes.length,
      sha256: sha(bytes),
      keptBytes: bytes.length,
      keptSha256: sha(bytes),
    });
    const stored = joinStream(asRows(got, 'stderr'));
    assert.equal(stored.data.toString('utf8'), lines);
    assert.ok(verifyStream(stored, r.stderr));
    // Each chunk decodes on its own: no chunk ends inside a character.
    for (const c of got) assert.equal(Buffer.from(c.data.toString('utf8')).length, c.data.length);
  });

  it('an API that never answers leaves the result undelivered (not verified), and finish returns within the drain time', async () => {
    const s = new OutputStreamer('r', 'plan', 2, () => Promise.reject(new Error('ECONNREFUSED')), {
      flushMs: 10,
      drainMs: 300,
    });
    s.stdout.push(Buffer.from('{"contract":1}\n'));
    const started = Date.now();
    const r = await s.finish();
    assert.ok(Date.now() - started < 5000, `finish took ${Date.now() - started} ms`);
    assert.equal(r.delivered, false);
    assert.equal(r.stdout.bytes, 15, 'the digest still covers the whole stream');
  });

  it('a refused chunk stops the posting at once: the rest is not sent and the result says so', async () => {
    let posts = 0;
    const s = new OutputStreamer('r', 'plan', 1, () => (posts++, Promise.resolve('refused' as const)), {
      chunkBytes: 10,
      flushMs: 5,
    });
    s.stderr.push(Buffer.alloc(100, 'a'));
    const r = await s.finish();
    assert.equal(posts, 1);
    assert.equal(r.delivered, false);
  });

  it('beyond the per-step cap the middle is dropped: head and tail are sent, the gap is counted, it still verifies', async () => {
    const got: OutputChunk[] = [];
    const s = new OutputStreamer('r', 'apply', 1, (_r, c) => (got.push(c), Promise.resolve('ok' as const)), {
      capBytes: 2000,
      chunkBytes: 256,
      flushMs: 5,
    });
    const whole = Buffer.from(Array.from({ length: 1000 }, (_, i) => `${String(i).padStart(4, '0')}\n`).join(''));
    for (let at = 0; at < whole.length; at += 700) s.stderr.push(whole.subarray(at, at + 700));
    const r = await s.finish();
    assert.equal(r.delivered, true);
    assert.equal(r.stderr.bytes, whole.length);
    assert.equal(r.stderr.sha256, sha(whole));
    assert.equal(r.stderr.keptBytes, 2000);
    const stored = joinStream(asRows(got, 'stderr'));
    assert.equal(stored.droppedBytes, whole.length - 2000);
    assert.ok(verifyStream(stored, r.stderr));
    const text = stored.data.toString('utf8');
    assert.ok(text.startsWith('0000\n0001\n'));
    assert.ok(text.endsWith('0998\n0999\n'));
    assert.match(text, new RegExp(`…\\[${whole.length - 2000} bytes cut\\]…`));
    // A tampered chunk does not verify.
    const tampered = asRows(got, 'stderr');
    tampered[0].data = Buffer.from(tampered[0].data.toString().replace('0000', '9999'));
    assert.equal(verifyStream(joinStream(tampered), r.stderr), false);
  });
});
