import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { ed25519 } from '@noble/curves/ed25519.js';
import { fromBase64Url, signApproval, toBase64Url } from '../../contract/approval';
import { approverKeyId } from '../../contract/approval-key-id';
import { PLAN_HASH_PATTERN } from '../../contract/workflow-safe';
import { CliError, required, type Command } from '../command';

interface KeyFile {
  keyId: string;
  publicKey: string;
  privateKey: string;
  by?: string;
}

/** A key file made by `keygen`, with its secret key (the key id is recomputed, never trusted). */
export function readKey(file: string): KeyFile & { secret: Uint8Array } {
  let k: KeyFile;
  try {
    k = JSON.parse(readFileSync(file, 'utf8')) as KeyFile;
  } catch (err) {
    throw new CliError(`cannot read key file ${file}: ${(err as Error).message}`);
  }
  const secret = fromBase64Url(k.privateKey ?? '');
  if (secret.length !== 32) throw new CliError(`${file}: not a patchnanny key file`);
  const publicKey = toBase64Url(ed25519.getPublicKey(secret));
  return { ...k, publicKey, keyId: approverKeyId(publicKey), secret };
}

export const keygen: Command = {
  name: 'keygen',
  summary: 'make an Ed25519 approver key pair',
  usage: `patchnanny keygen --out <file> [--by <name>]
  Make an Ed25519 key pair. The private key is written to <file> (mode 0600, refused if it exists);
  the key id and public key are printed: an admin registers the public key (POST /v1/keys).`,
  options: { out: { type: 'string' }, by: { type: 'string' } },
  run(ctx) {
    const out = required(ctx, 'out');
    const secret = ed25519.utils.randomSecretKey();
    const publicKey = toBase64Url(ed25519.getPublicKey(secret));
    const keyId = approverKeyId(publicKey);
    const by = ctx.values.by;
    const file: KeyFile = {
      keyId,
      publicKey,
      privateKey: toBase64Url(secret),
      ...(typeof by === 'string' ? { by } : {}),
    };
    try {
      writeFileSync(out, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
    } catch (err) {
      throw new CliError(`cannot write ${out}: ${(err as Error).message}`);
    }
    chmodSync(out, 0o600); // whatever the umask
    ctx.out(JSON.stringify({ keyId, publicKey }));
    return Promise.resolve();
  },
};

export const signApprovalCommand: Command = {
  name: 'sign-approval',
  summary: 'print a signed approval of a plan (offline)',
  usage: `patchnanny sign-approval --key <file> --run <id> --plan-hash <h> --by <name> [--at <iso>]
  Print a signed approval (JSON) of that run's plan by <name>, for
    temporal workflow signal --workflow-id <id> --name approve --input '<json>'
  or as the body of POST /v1/runs/<id>/approve.`,
  options: {
    key: { type: 'string' },
    run: { type: 'string' },
    'plan-hash': { type: 'string' },
    by: { type: 'string' },
    at: { type: 'string' },
  },
  run(ctx) {
    const [key, run, planHash, by] = ['key', 'run', 'plan-hash', 'by'].map((o) => required(ctx, o));
    if (!PLAN_HASH_PATTERN.test(planHash)) throw new CliError('--plan-hash: a 64-hex plan hash is required');
    const k = readKey(key);
    const at = typeof ctx.values.at === 'string' ? ctx.values.at : new Date().toISOString();
    ctx.out(JSON.stringify(signApproval({ runId: run, planHash, by, at }, k.keyId, k.secret)));
    return Promise.resolve();
  },
};
