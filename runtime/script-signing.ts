/**
 * Ed25519 signatures over patch scripts (docs/script-signing.md), shared by the signing command
 * (scripts/dev/sign-scripts.ts), the API's script loader and the agent. Node-only (node:crypto):
 * no workflow code touches it.
 *
 * - A public key travels as `<keyId>:<base64url of the raw 32-byte key>`; the key id is the first
 *   8 bytes of the SHA-256 of the raw key, hex, so it is derived, never chosen, and cannot lie.
 * - A private key is a PKCS#8 PEM file (0600), kept off the API host (offline, on the release machine).
 * - `<script>.sig` next to a script holds `{"signatures":[{"keyId","signature"}]}` over the exact
 *   file bytes: several signatures at once, so a script can be signed by the old and the new key
 *   while agents are moved from one to the other (rotation).
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

export const KeyId = z.string().regex(/^[0-9a-f]{16}$/, 'a key id: 16 lowercase hex digits');

export const ScriptSignature = z.strictObject({
  keyId: KeyId,
  signature: z.string().regex(/^[A-Za-z0-9_-]{86}$/, 'a base64url Ed25519 signature (64 bytes)'),
});
export type ScriptSignature = z.infer<typeof ScriptSignature>;

/** The content of a `<script>.sig` file (and of the API's `signatures` field, as its array). */
export const SignatureFile = z.strictObject({ signatures: z.array(ScriptSignature).max(16) });
export type SignatureFile = z.infer<typeof SignatureFile>;

export interface TrustedKey {
  keyId: string;
  key: KeyObject;
}

/** The raw 32-byte Ed25519 public key of a key object. */
function rawPublic(key: KeyObject): Buffer {
  const jwk = key.export({ format: 'jwk' });
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || !jwk.x) throw new Error('not an Ed25519 key');
  return Buffer.from(jwk.x, 'base64url');
}

export const keyIdOf = (raw: Buffer): string => createHash('sha256').update(raw).digest('hex').slice(0, 16);

/** `<keyId>:<base64url>` for a public (or private) key object. */
export function publicKeyLine(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const raw = rawPublic(pub);
  return `${keyIdOf(raw)}:${raw.toString('base64url')}`;
}

/** A fresh key pair: the private key as PKCS#8 PEM, the public one as its key line. */
export function generateSigningKey(): { privatePem: string; publicLine: string } {
  const { privateKey } = generateKeyPairSync('ed25519');
  return {
    privatePem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    publicLine: publicKeyLine(privateKey),
  };
}

/** One trusted key from its `<keyId>:<base64url>` line; the id must be the key's own. */
export function parsePublicKeyLine(line: string): TrustedKey {
  const m = /^([0-9a-f]{16}):([A-Za-z0-9_-]{43})$/.exec(line.trim());
  if (!m) throw new Error(`not a script signing key (expected <16 hex key id>:<base64url 32-byte key>): ${line}`);
  const raw = Buffer.from(m[2], 'base64url');
  if (raw.length !== 32) throw new Error(`script signing key ${m[1]} is not 32 bytes`);
  if (keyIdOf(raw) !== m[1])
    throw new Error(`script signing key ${m[1]}: the id does not match the key (it is ${keyIdOf(raw)})`);
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: m[2] }, format: 'jwk' });
  return { keyId: m[1], key };
}

/**
 * A list of trusted keys: comma-, space- or newline-separated key lines; `#` starts a comment (so
 * a keys file can say whose key each line is). Duplicates are dropped.
 */
export function parseTrustedKeys(text: string): TrustedKey[] {
  const keys = new Map<string, TrustedKey>();
  for (const line of text.split('\n')) {
    for (const item of line.replace(/#.*/, '').split(/[,\s]+/)) {
      if (item === '') continue;
      const k = parsePublicKeyLine(item);
      keys.set(k.keyId, k);
    }
  }
  return [...keys.values()];
}

/** Sign the exact bytes with a private key (PKCS#8 PEM). */
export function signScript(content: Buffer, privatePem: string): ScriptSignature {
  return {
    keyId: publicKeyLine(createPublicKey(privatePem)).slice(0, 16),
    signature: sign(null, content, privatePem).toString('base64url'),
  };
}

export type SignatureCheck = { ok: true; keyId: string } | { ok: false; reason: string };

/**
 * Does a signature by a trusted key verify over these bytes? Signatures by keys not trusted here
 * are ignored (a script signed by old and new key passes on agents that know either); the reason
 * names the key ids tried, so an operator sees which key is missing where.
 */
export function checkSignatures(
  content: Buffer,
  signatures: readonly ScriptSignature[],
  trusted: readonly TrustedKey[],
): SignatureCheck {
  const byId = new Map(trusted.map((k) => [k.keyId, k.key]));
  const trustedIds = trusted.map((k) => k.keyId).join(', ') || 'none';
  if (signatures.length === 0) return { ok: false, reason: `it has no signature (trusted keys: ${trustedIds})` };
  const bad: string[] = [];
  for (const s of signatures) {
    const key = byId.get(s.keyId);
    if (!key) continue;
    if (verify(null, content, key, Buffer.from(s.signature, 'base64url'))) return { ok: true, keyId: s.keyId };
    bad.push(s.keyId);
  }
  const signedBy = signatures.map((s) => s.keyId).join(', ');
  return {
    ok: false,
    reason: bad.length
      ? `its signature by trusted key ${bad.join(', ')} does not verify over these bytes (trusted keys: ${trustedIds})`
      : `it is signed only by key(s) ${signedBy}, none of them trusted (trusted keys: ${trustedIds})`,
  };
}

export const sigPathFor = (scriptPath: string) => `${scriptPath}.sig`;

/**
 * Sign every `*-update.sh` of `dir` with each private key, writing `<script>.sig` next to it; with
 * `outDir`, the scripts are first copied there (unchanged bytes) and signed in the copy, so a
 * development key never writes into the repository's scripts folder.
 */
export function signScriptsDir(
  dir: string,
  privatePems: readonly string[],
  outDir: string = dir,
): { name: string; keyIds: string[] }[] {
  if (privatePems.length === 0) throw new Error('no signing key given');
  mkdirSync(outDir, { recursive: true, mode: 0o700 });
  const signed: { name: string; keyIds: string[] }[] = [];
  for (const name of readdirSync(dir).sort()) {
    if (!/^[a-z]+-update\.sh$/.test(name)) continue;
    const content = readFileSync(path.join(dir, name));
    const target = path.join(outDir, name);
    if (path.resolve(outDir) !== path.resolve(dir)) writeFileSync(target, content, { mode: 0o644 });
    const file: SignatureFile = { signatures: privatePems.map((pem) => signScript(content, pem)) };
    writeFileSync(sigPathFor(target), JSON.stringify(file, null, 2) + '\n', { mode: 0o644 });
    signed.push({ name, keyIds: file.signatures.map((s) => s.keyId) });
  }
  return signed;
}

/** Create a private key file (0600) unless it exists; its public key line either way. */
export function ensureSigningKey(file: string): string {
  if (!existsSync(file)) {
    const { privatePem } = generateSigningKey();
    writeFileSync(file, privatePem, { mode: 0o600, flag: 'wx' });
  }
  return publicKeyLine(createPrivateKey(readFileSync(file)));
}
