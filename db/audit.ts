/**
 * The audit trail: an append-only, hash-chained log of every state change (issue 10).
 *
 * Each row's `hash` is SHA-256 over a canonical encoding of (seq, at, actor, kind, subject,
 * detail, prev_hash), and `prev_hash` is the previous row's `hash` (GENESIS for seq 1). So a row
 * edited in place no longer matches its hash, a deleted row leaves a gap in seq, and a row moved
 * elsewhere no longer follows the hash it names. What it cannot show: someone with write access
 * who rewrites every row from some point on (docs/audit.md: anchor the head hash elsewhere).
 */
import { sha256Hex } from '../contract/plan-hash';
import { jsonb, pgText, type Db } from '.';

/** prev_hash of the first row. */
export const GENESIS = '0'.repeat(64);

/** Any advisory lock key only this module uses: serializes appends so they form one chain. */
const AUDIT_LOCK = 0x617564_6974; // "audit"

/**
 * What is audited. Other modules may append kinds not listed here; docs/audit.md is the list:
 * run.requested, run.start-failed, run.cancel-requested, run.plan-recorded, run.approved,
 * run.rejected, run.outcome, exception.created|updated|deleted,
 * window.created|updated|deleted|paused|resumed|triggered, agent.registered|accepted|revoked,
 * enrolment-token.created|revoked (and, from other parts of issue 10, user/key kinds).
 */
export interface AuditEntry {
  /** Who: a principal name, `system`, `window:<id>` or `workflow:<id>`. */
  actor: string;
  kind: string;
  /** The id of what changed. */
  subject: string;
  detail?: Record<string, unknown>;
  /** Appends repeated by a retried activity share a key; only the first is kept. */
  dedupeKey?: string;
}

export interface AuditRow {
  seq: string; // bigint, as node-postgres returns it
  at: Date;
  actor: string;
  kind: string;
  subject: string;
  detail: Record<string, unknown>;
  prev_hash: string;
  hash: string;
  dedupe_key: string | null;
}

/** JSON with object keys sorted at every depth: one encoding per value, whatever jsonb did to key order. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
}

/** The row hash: SHA-256 (hex) of the canonical JSON array [seq, at, actor, kind, subject, detail, prev_hash]. */
export function auditHash(r: Pick<AuditRow, 'seq' | 'at' | 'actor' | 'kind' | 'subject' | 'detail' | 'prev_hash'>) {
  return sha256Hex(
    canonicalJson([String(r.seq), r.at.toISOString(), r.actor, r.kind, r.subject, r.detail, r.prev_hash]),
  );
}

/** The detail as jsonb will give it back: undefined dropped, NUL (refused by PostgreSQL) replaced. */
function storable(detail: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(JSON.stringify(detail).replace(/(?<!\\)((?:\\\\)*)\\u0000/g, '$1\\ufffd')) as Record<
    string,
    unknown
  >;
}

/**
 * Append one entry. Inside a transaction (the state change's own, where the caller has one) it
 * joins it, so the entry exists exactly when the change does; otherwise it opens one. The lock is
 * released at commit, and seq is max + 1 under it, so concurrent appends form one gap-free chain.
 * Returns the row, or null when `dedupeKey` was appended before.
 */
export async function appendAudit(db: Db, entry: AuditEntry): Promise<AuditRow | null> {
  if (!db.isTransaction) return db.transaction((trx) => appendAudit(trx, entry));
  await db.raw('select pg_advisory_xact_lock(?)', [AUDIT_LOCK]);
  if (entry.dedupeKey && (await db('audit_log').where({ dedupe_key: entry.dedupeKey }).first('seq'))) return null;
  const last = await db<AuditRow>('audit_log').orderBy('seq', 'desc').first('seq', 'hash');
  const row = {
    seq: String(last ? BigInt(last.seq) + 1n : 1n),
    at: new Date(), // millisecond precision, which is what comes back from timestamptz into a Date
    actor: pgText(entry.actor),
    kind: pgText(entry.kind),
    subject: pgText(entry.subject),
    detail: storable(entry.detail ?? {}),
    prev_hash: last ? last.hash : GENESIS,
  };
  const hash = auditHash(row);
  await db('audit_log').insert({
    ...row,
    detail: jsonb(db, row.detail),
    hash,
    dedupe_key: entry.dedupeKey ?? null,
  });
  return { ...row, hash, dedupe_key: entry.dedupeKey ?? null };
}

export interface AuditQuery {
  /** Rows with seq greater than this (the previous page's `next`). */
  after?: string;
  limit: number;
  kind?: string;
  subject?: string;
}

/** Oldest first, the order the chain is verified in. */
export function listAudit(db: Db, q: AuditQuery): Promise<AuditRow[]> {
  const query = db<AuditRow>('audit_log').orderBy('seq', 'asc').limit(q.limit);
  if (q.after !== undefined) void query.where('seq', '>', q.after);
  if (q.kind !== undefined) void query.where({ kind: q.kind });
  if (q.subject !== undefined) void query.where({ subject: q.subject });
  return query;
}

export type VerifyResult =
  | { ok: true; rows: number; head: string }
  | { ok: false; rows: number; seq: string; problem: 'edited' | 'deleted' | 'reordered'; message: string };

/**
 * Walk the chain in seq order and name the first row that breaks it:
 * - a gap in seq: rows were deleted before it;
 * - prev_hash not the previous row's hash: it was moved (reordered), or a row before it was
 *   replaced or deleted and the seqs renumbered;
 * - its hash not the hash of its content: it was edited.
 * Reads in pages so a long trail does not have to fit in memory.
 */
export async function verifyAudit(db: Db, pageSize = 1000): Promise<VerifyResult> {
  let prevHash = GENESIS;
  let expected = 1n;
  let rows = 0;
  for (;;) {
    const page = await db<AuditRow>('audit_log')
      .where('seq', '>=', String(expected))
      .orderBy('seq', 'asc')
      .limit(pageSize);
    for (const r of page) {
      const seq = BigInt(r.seq);
      const fail = (problem: 'edited' | 'deleted' | 'reordered', message: string): VerifyResult => ({
        ok: false,
        rows,
        seq: r.seq,
        problem,
        message: `row ${r.seq}: ${message}`,
      });
      if (seq !== expected)
        return fail(
          'deleted',
          `seq ${expected}${seq - 1n > expected ? `..${seq - 1n}` : ''} missing before it: row(s) deleted`,
        );
      if (r.prev_hash !== prevHash)
        return fail(
          'reordered',
          `prev_hash ${r.prev_hash.slice(0, 12)}… is not row ${expected - 1n}'s hash ${prevHash.slice(0, 12)}…: rows reordered, or one before it replaced`,
        );
      const actual = auditHash(r);
      if (actual !== r.hash)
        return fail(
          'edited',
          `content hashes to ${actual.slice(0, 12)}…, not its recorded hash ${r.hash.slice(0, 12)}…: row edited`,
        );
      prevHash = r.hash;
      expected = seq + 1n;
      rows += 1;
    }
    if (page.length < pageSize) return { ok: true, rows, head: prevHash };
  }
}
