/**
 * `npm run sign:scripts -- --key <private key file> [--key <another>] [--dir scripts/patch] [--out <dir>]`
 *   writes `<script>.sig` next to each `*-update.sh` (in `--out`, a signed copy, when given);
 *   several `--key`s sign with each (rotation: old and new key while agents move over).
 * `npm run sign:scripts -- keygen --out <file>`
 *   makes a key pair: the private key in <file> (0600, never on the API host), the public key line
 *   `<keyId>:<base64url>` in <file>.pub and on stdout, for the agents' PATCHNANNY_TRUSTED_SCRIPT_KEYS.
 * See docs/script-signing.md.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ensureSigningKey, signScriptsDir } from '../../runtime/script-signing';
import { REPO_ROOT } from './temporal-server';

function usage(why: string): never {
  console.error(
    `${why}\nusage: sign-scripts --key <private key file> [--key …] [--dir <scripts dir>] [--out <dir>]\n` +
      '       sign-scripts keygen --out <private key file>',
  );
  process.exit(2);
}

function main(argv: string[]): void {
  const keygen = argv[0] === 'keygen';
  const args = keygen ? argv.slice(1) : argv;
  const keys: string[] = [];
  let dir = path.join(REPO_ROOT, 'scripts/patch');
  let out: string | undefined;
  for (let i = 0; i < args.length; i += 2) {
    const value = args[i + 1];
    if (value === undefined) usage(`missing value after ${args[i]}`);
    if (args[i] === '--key') keys.push(value);
    else if (args[i] === '--dir') dir = path.resolve(value);
    else if (args[i] === '--out') out = path.resolve(value);
    else usage(`unknown flag ${args[i]}`);
  }
  if (keygen) {
    if (!out) usage('keygen needs --out <file>');
    try {
      readFileSync(out);
      usage(`${out} exists; a key is never overwritten`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const line = ensureSigningKey(out);
    writeFileSync(`${out}.pub`, line + '\n', { mode: 0o644 });
    console.error(`private key: ${out} (0600; keep it offline)\npublic key:  ${out}.pub`);
    console.log(line);
    return;
  }
  if (keys.length === 0) usage('no --key given');
  const pems = keys.map((k) => readFileSync(k, 'utf8'));
  const signed = signScriptsDir(dir, pems, out ?? dir);
  if (signed.length === 0) usage(`no *-update.sh in ${dir}`);
  for (const s of signed) console.log(`${path.join(out ?? dir, s.name)}.sig  keys ${s.keyIds.join(', ')}`);
}

main(process.argv.slice(2));
