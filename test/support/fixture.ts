/**
 * The state of one agent's fixture patch script (test/fixtures/scripts/apt-update.sh lists the
 * files and what each makes the script do).
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { until } from './wait';

export function fixture(agent: { fixtureDir: string }) {
  const file = (name: string) => path.join(agent.fixtureDir, name);
  const read = (name: string) => (existsSync(file(name)) ? readFileSync(file(name), 'utf8') : null);
  return {
    set: (name: string, content: string | number) => writeFileSync(file(name), `${content}\n`),
    remove: (name: string) => rmSync(file(name), { force: true }),
    read,
    /** Every invocation so far, in order: "dry-run", "apply", "dry-run --exclude x". */
    calls: () => (read('calls.log') ?? '').split('\n').filter(Boolean),
    applied: () => existsSync(file('applied')),
    /** The pid of the script's latest invocation in `mode`, once it has started. */
    pid: (mode: 'dry-run' | 'apply') => Number(read(`pid-${mode}`)),
    /** Wait until the script has been invoked `count` times in total and the last one is `mode`. */
    started: (mode: 'dry-run' | 'apply', count: number) =>
      until(`script call ${count} (${mode})`, () => {
        const calls = read('calls.log')?.split('\n').filter(Boolean) ?? [];
        return calls.length >= count && calls[count - 1].split(' ')[0] === mode;
      }),
  };
}
