import { readdirSync, readFileSync } from 'node:fs';

/**
 * Wait for a condition that an event makes true (a file written, a process gone). The deadline
 * only turns a hang into a failure that names what never happened; it is not a timing assumption.
 */
export async function until(what: string, done: () => boolean | Promise<boolean>, deadlineMs = 60_000): Promise<void> {
  await waitFor(what, done, deadlineMs);
}

/** Like `until`, for a probe that returns what it found: polls until that is truthy, and returns it. */
export async function waitFor<T>(
  what: string,
  probe: () => T | Promise<T>,
  deadlineMs = 60_000,
  everyMs = 50,
): Promise<Exclude<T, false | null | undefined | '' | 0>> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const found = await probe();
    if (found) return found as Exclude<T, false | null | undefined | '' | 0>;
    if (Date.now() > deadline) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Pids of the live (not zombie) processes in process group `pgid`, read from /proc. */
export function liveInGroup(pgid: number): number[] {
  const live: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited while we looked
    }
    // "pid (comm) state ppid pgrp …"; comm may itself contain spaces and parentheses
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z') live.push(Number(entry));
  }
  return live.sort((a, b) => a - b);
}
