/**
 * `npm run gen:scripts`: writes the served patch scripts, scripts/patch/<manager>-update.sh, from
 * their sources in scripts/patch/src/ — each manager's part with src/common.sh pasted in at its
 * `# @include common.sh` line. An agent downloads one file and verifies its SHA-256, so what is
 * served must be self-contained; the sources keep one copy of what every script shares.
 *
 * `--check` writes nothing and exits 1 when a committed script is not what the sources generate
 * (test/scripts/generated.test.ts asserts the same, so `npm test` fails on a stale script).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export const PATCH_DIR = path.resolve(__dirname, '../../../scripts/patch');
/** One served script per manager; the `yum` family is served dnf-update.sh (contract scriptNameFor). */
export const MANAGERS = ['apt', 'dnf', 'zypper', 'pacman'] as const;
const INCLUDE = '# @include common.sh\n';

const source = (file: string) => readFileSync(path.join(PATCH_DIR, 'src', file), 'utf8');

export const scriptFile = (manager: (typeof MANAGERS)[number]) => path.join(PATCH_DIR, `${manager}-update.sh`);

/** The served script for a manager, exactly as it must be committed. */
export function generateScript(manager: (typeof MANAGERS)[number]): string {
  const part = source(`${manager}.sh`);
  const pieces = part.split(INCLUDE);
  if (pieces.length !== 2) throw new Error(`src/${manager}.sh must contain exactly one line '${INCLUDE.trim()}'`);
  const newline = part.indexOf('\n');
  if (!part.startsWith('#!')) throw new Error(`src/${manager}.sh must start with a #! line`);
  const notice = [
    `# Generated from scripts/patch/src/${manager}.sh and scripts/patch/src/common.sh by`,
    '# scripts/dev/gen-scripts.ts. Do not edit: edit src/, then run `npm run gen:scripts`.',
    '#',
  ].join('\n');
  const [head, tail] = [pieces[0].slice(newline + 1), pieces[1]];
  return `${part.slice(0, newline)}\n${notice}\n${head}${source('common.sh')}${tail}`;
}

function main(): void {
  const check = process.argv.includes('--check');
  const stale: string[] = [];
  for (const manager of MANAGERS) {
    const file = scriptFile(manager);
    const wanted = generateScript(manager);
    let current = '';
    try {
      current = readFileSync(file, 'utf8');
    } catch {
      // missing: stale
    }
    if (current === wanted) continue;
    stale.push(path.basename(file));
    if (!check) writeFileSync(file, wanted, { mode: 0o755 });
  }
  if (check && stale.length) {
    console.error(`stale generated scripts: ${stale.join(', ')} (run npm run gen:scripts)`);
    process.exit(1);
  }
  console.log(stale.length ? `${check ? 'stale' : 'wrote'}: ${stale.join(', ')}` : 'generated scripts are up to date');
}

if (require.main === module) main();
