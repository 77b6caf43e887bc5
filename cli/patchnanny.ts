#!/usr/bin/env node
/**
 * `patchnanny`: an approver's tools (issue 10). Keys are made and used here, on the approver's
 * machine; only the public key ever leaves it.
 *
 *   patchnanny keygen --out <file>
 *   patchnanny sign-approval --key <file> --run <id> --plan-hash <h> --by <name>
 *   patchnanny approve <runId> --key <file> --api-url <url> --token <token> [--yes]
 */
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline/promises';
import { parseArgs } from 'node:util';
import { ed25519 } from '@noble/curves/ed25519.js';
import { z } from 'zod';
import { fromBase64Url, signApproval, toBase64Url, type SignedApproval } from '../contract/approval';
import { approverKeyId } from '../contract/approval-key-id';
import { PLAN_HASH_PATTERN } from '../contract/workflow-safe';

const HELP: Record<string, string> = {
  keygen: `patchnanny keygen --out <file>
  Make an Ed25519 key pair. The private key is written to <file> (mode 0600, refused if it exists);
  the key id and public key are printed: an admin registers the public key (POST /v1/keys).`,
  'sign-approval': `patchnanny sign-approval --key <file> --run <id> --plan-hash <h> --by <name> [--at <iso>]
  Print a signed approval (JSON) of that run's plan by <name>, for
    temporal workflow signal --workflow-id <id> --name approve --input '<json>'
  or as the body of POST /v1/runs/<id>/approve.`,
  approve: `patchnanny approve <runId> --key <file> --api-url <url> --token <token> [--yes]
  Fetch the run, show its plan, ask, then sign the plan as the token's principal and approve it.
  --by <name> names the principal when it is not the key's registered owner (default: the key file's "by").`,
};

/** What the CLI reads of the API's answers (zod at the boundary). */
const ErrorBody = z.object({ error: z.object({ message: z.string() }) });
const RunAnswer = z.object({
  run: z.object({
    phase: z.string(),
    outcome: z.string().nullable(),
    agentId: z.string(),
    planHash: z.string().nullable(),
    plan: z.array(
      z.object({
        name: z.string(),
        current: z.string().nullable().optional(),
        candidate: z.string().nullable().optional(),
      }),
    ),
  }),
});
const ApproveAnswer = z.object({ status: z.object({ approvedBy: z.string().nullable() }) });

interface KeyFile {
  keyId: string;
  publicKey: string;
  privateKey: string;
  by?: string;
}

function usage(command?: string): never {
  process.stderr.write(`${command && HELP[command] ? HELP[command] : Object.values(HELP).join('\n\n')}\n`);
  process.exit(2);
}

function fail(message: string): never {
  process.stderr.write(`patchnanny: ${message}\n`);
  process.exit(1);
}

function readKey(file: string): KeyFile & { secret: Uint8Array } {
  let k: KeyFile;
  try {
    k = JSON.parse(readFileSync(file, 'utf8')) as KeyFile;
  } catch (err) {
    fail(`cannot read key file ${file}: ${(err as Error).message}`);
  }
  const secret = fromBase64Url(k.privateKey ?? '');
  if (secret.length !== 32) fail(`${file}: not a patchnanny key file`);
  const publicKey = toBase64Url(ed25519.getPublicKey(secret));
  return { ...k, publicKey, keyId: approverKeyId(publicKey), secret };
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || !HELP[command]) usage();
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: command === 'approve',
    options: {
      help: { type: 'boolean', short: 'h' },
      out: { type: 'string' },
      key: { type: 'string' },
      run: { type: 'string' },
      'plan-hash': { type: 'string' },
      by: { type: 'string' },
      at: { type: 'string' },
      'api-url': { type: 'string' },
      token: { type: 'string' },
      yes: { type: 'boolean', short: 'y' },
    },
  });
  if (values.help) usage(command);

  if (command === 'keygen') {
    if (!values.out) usage(command);
    const secret = ed25519.utils.randomSecretKey();
    const publicKey = toBase64Url(ed25519.getPublicKey(secret));
    const keyId = approverKeyId(publicKey);
    const file: KeyFile = {
      keyId,
      publicKey,
      privateKey: toBase64Url(secret),
      ...(values.by ? { by: values.by } : {}),
    };
    try {
      writeFileSync(values.out, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
    } catch (err) {
      fail(`cannot write ${values.out}: ${(err as Error).message}`);
    }
    chmodSync(values.out, 0o600); // whatever the umask
    process.stdout.write(`${JSON.stringify({ keyId, publicKey })}\n`);
    return;
  }

  if (command === 'sign-approval') {
    const { key, run, by } = values;
    const planHash = values['plan-hash'];
    if (!key || !run || !planHash || !by) usage(command);
    if (!PLAN_HASH_PATTERN.test(planHash)) fail('--plan-hash: a 64-hex plan hash is required');
    const k = readKey(key);
    const at = values.at ?? new Date().toISOString();
    process.stdout.write(`${JSON.stringify(signApproval({ runId: run, planHash, by, at }, k.keyId, k.secret))}\n`);
    return;
  }

  // approve
  const runId = positionals[0];
  const apiUrl = values['api-url'] ?? process.env.PATCHNANNY_API_URL;
  const token = values.token ?? process.env.PATCHNANNY_TOKEN;
  if (!runId || !values.key || !apiUrl || !token) usage(command);
  const k = readKey(values.key);
  const by = values.by ?? k.by;
  if (!by) fail('--by: the name you approve as is required (the key file names none)');
  const call = async <T>(method: string, path: string, schema: z.ZodType<T>, body?: unknown): Promise<T> => {
    const res = await fetch(new URL(path, apiUrl), {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const json: unknown = await res.json().catch(() => null);
    if (!res.ok) fail(`${method} ${path}: ${res.status} ${ErrorBody.safeParse(json).data?.error.message ?? ''}`);
    const parsed = schema.safeParse(json);
    if (!parsed.success) fail(`${method} ${path}: unexpected answer: ${parsed.error.message}`);
    return parsed.data;
  };
  const { run } = await call('GET', `/v1/runs/${encodeURIComponent(runId)}`, RunAnswer);
  if (run.phase !== 'awaiting-approval' || !run.planHash)
    fail(`run ${runId} is ${run.outcome ?? run.phase}, not awaiting approval`);
  process.stdout.write(`run ${runId} on ${run.agentId}: plan ${run.planHash}\n`);
  for (const p of run.plan) process.stdout.write(`  ${p.name} ${p.current ?? ''} -> ${p.candidate ?? ''}\n`);
  if (!values.yes) {
    const rl = createInterface({ input: process.stdin, output: process.stdout });
    const answer = await rl.question(`approve this plan as ${by}? [y/N] `);
    rl.close();
    if (!/^y(es)?$/i.test(answer.trim())) fail('not approved');
  }
  const signed: SignedApproval = signApproval(
    { runId, planHash: run.planHash, by, at: new Date().toISOString() },
    k.keyId,
    k.secret,
  );
  const { planHash, at, keyId, signature } = signed;
  const { status } = await call('POST', `/v1/runs/${encodeURIComponent(runId)}/approve`, ApproveAnswer, {
    planHash,
    at,
    keyId,
    signature,
  });
  process.stdout.write(`approved by ${status.approvedBy ?? by}\n`);
}

main(process.argv.slice(2)).catch((err) => fail((err as Error).message));
