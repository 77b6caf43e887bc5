/**
 * An approver key's id is its fingerprint, so the CLI can name the key it signs with from the
 * key alone and nobody can register one public key under two ids. Node only (not the workflow).
 */
import { createHash } from 'node:crypto';
import { fromBase64Url, toBase64Url } from './approval';

/** `key_` + the first 16 bytes of SHA-256 over the raw 32-byte public key, base64url. */
export function approverKeyId(publicKey: string | Uint8Array): string {
  const raw = typeof publicKey === 'string' ? fromBase64Url(publicKey) : publicKey;
  return `key_${toBase64Url(createHash('sha256').update(raw).digest().subarray(0, 16))}`;
}
