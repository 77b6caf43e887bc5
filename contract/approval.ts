/**
 * Signed approvals (issue 10): the statement an approver signs with their Ed25519 key, and the
 * one check the workflow makes of it. Workflow-safe: no zod, no Node built-ins (the workflow
 * sandbox has no `crypto` or `Buffer`); @noble/curves is pure JS.
 */
import { ed25519 } from '@noble/curves/ed25519.js';

/** Domain separation: a signature over an approval can never be mistaken for anything else signed with the key. */
export const APPROVAL_CONTEXT = 'patchnanny-approval-v1';
/** An approval is stale once its `at` is this old when it reaches the run. */
export const APPROVAL_MAX_AGE_MS = 24 * 3600_000;
/** Clock skew tolerated between the signer and the workflow (an `at` this far in the future passes). */
export const APPROVAL_CLOCK_SKEW_MS = 5 * 60_000;

/** What a person approves: exactly this plan of exactly this run, by them, at that time. */
export interface ApprovalStatement {
  runId: string;
  planHash: string;
  by: string;
  at: string;
}

/** The statement plus who signed it: the approve Update's and signal's payload, and the API's record. */
export interface SignedApproval extends ApprovalStatement {
  /** The approver key's id (its fingerprint, `key_…`). */
  keyId: string;
  /** Ed25519 signature over approvalStatement(…), base64url (64 bytes). */
  signature: string;
}

/** An approver key as pinned by a run when it started (db/approver-keys.ts approverKeys). */
export interface PinnedKey {
  keyId: string;
  owner: string;
  /** 32-byte Ed25519 public key, base64url. */
  publicKey: string;
}

/**
 * The exact bytes signed: the context line, then JSON with a fixed key order (built here, not
 * from the caller's object, so key order or extra fields can never change what was signed).
 */
export function approvalStatement(s: ApprovalStatement): Uint8Array {
  const json = JSON.stringify({ runId: s.runId, planHash: s.planHash, by: s.by, at: s.at });
  return new TextEncoder().encode(`${APPROVAL_CONTEXT}\n${json}`);
}

/** Sign a statement (the CLI, the review page and tests; never the workflow). */
export function signApproval(s: ApprovalStatement, keyId: string, privateKey: Uint8Array): SignedApproval {
  const statement = { runId: s.runId, planHash: s.planHash, by: s.by, at: s.at };
  return { ...statement, keyId, signature: toBase64Url(ed25519.sign(approvalStatement(statement), privateKey)) };
}

export interface VerifyContext {
  runId: string;
  /** The run's current plan hash. */
  planHash: string;
  /** The keys pinned when the run started. */
  keys: readonly PinnedKey[];
  /** Now (workflow time, epoch ms). */
  now: number;
  /** When the plan was recorded (workflow time, epoch ms): an approval signed before it is stale. */
  planAt: number;
}

/**
 * Why a signed approval must not be applied, or null when it may. `a` is already well-formed
 * (checkApprove). Checked in this order so the reason names the first thing wrong.
 */
export function approvalProblem(a: SignedApproval, ctx: VerifyContext): string | null {
  if (a.runId !== ctx.runId) return `signed for another run (${a.runId})`;
  if (a.planHash !== ctx.planHash) return `stale plan hash: ${a.planHash} is not the current plan ${ctx.planHash}`;
  const at = Date.parse(a.at);
  if (at > ctx.now + APPROVAL_CLOCK_SKEW_MS) return `signed in the future (at ${a.at})`;
  if (at < ctx.now - APPROVAL_MAX_AGE_MS) return `stale approval: signed at ${a.at}, more than 24 h ago`;
  if (at < ctx.planAt - APPROVAL_CLOCK_SKEW_MS) return `stale approval: signed at ${a.at}, before the plan was made`;
  const key = ctx.keys.find((k) => k.keyId === a.keyId);
  if (!key) return `unknown approver key ${a.keyId} (not registered when the run started, or revoked since)`;
  if (key.owner !== a.by) return `key ${a.keyId} belongs to ${key.owner}, not ${a.by}`;
  const invalid = `invalid signature by key ${a.keyId}`;
  try {
    return ed25519.verify(fromBase64Url(a.signature), approvalStatement(a), fromBase64Url(key.publicKey))
      ? null
      : invalid;
  } catch {
    return invalid; // not decodable as a signature at all
  }
}

export const BASE64URL_PATTERN = /^[A-Za-z0-9_-]*$/;
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** base64url without padding (no Buffer in the workflow sandbox). */
export function toBase64Url(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    const chars = Math.min(4, Math.ceil(((bytes.length - i) * 8) / 6));
    for (let j = 0; j < chars; j++) out += ALPHABET[(n >> (18 - 6 * j)) & 63];
  }
  return out;
}

export function fromBase64Url(text: string): Uint8Array {
  if (!BASE64URL_PATTERN.test(text) || text.length % 4 === 1) throw new Error('not base64url');
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const c of text) {
    value = (value << 6) | ALPHABET.indexOf(c);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >> bits) & 255);
    }
  }
  return Uint8Array.from(out);
}
