/**
 * Keeps `npm start`'s processes up: a child that exits is restarted with exponential backoff
 * and the log says so; one crash never takes the others down. stop() ends everything and
 * restarts nothing more.
 */
import type { ChildProcess } from 'node:child_process';
import { stopChild } from './processes';

export interface Backoff {
  /** First restart delay; doubles with each crash in a row. */
  initialMs: number;
  maxMs: number;
  /** A child that ran this long before exiting starts the count again. */
  healthyAfterMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 1000, maxMs: 30_000, healthyAfterMs: 60_000 };

/** Delay before restart `attempt` (1-based): 1 s, 2 s, 4 s, … capped. */
export const restartDelay = (attempt: number, b: Backoff = DEFAULT_BACKOFF) =>
  Math.min(b.maxMs, b.initialMs * 2 ** Math.min(30, attempt - 1));

interface Entry {
  name: string;
  start: () => Promise<ChildProcess>;
  child: ChildProcess | null;
  startedAt: number;
  attempt: number;
  timer: NodeJS.Timeout | null;
  /** A restart under way (the dev server takes seconds to answer); stop() waits for it. */
  starting: Promise<void> | null;
  /** Exit codes that mean "do not start me again" (a revoked agent exits 77), with why. */
  final: Record<number, string>;
}

export class Supervisor {
  private readonly entries: Entry[] = [];
  private stopping = false;

  constructor(
    private readonly log: (line: string) => void = (l) => console.error(l),
    private readonly backoff: Backoff = DEFAULT_BACKOFF,
  ) {}

  /**
   * Start a child and keep it running. The first start's failure is thrown (a stack that cannot
   * start at all should say why and stop); later starts that fail count as crashes.
   */
  async add(
    name: string,
    start: () => Promise<ChildProcess> | ChildProcess,
    final: Record<number, string> = {},
  ): Promise<ChildProcess> {
    const entry: Entry = {
      name,
      start: async () => start(),
      child: null,
      startedAt: 0,
      attempt: 0,
      timer: null,
      starting: null,
      final,
    };
    this.entries.push(entry);
    const first = entry.start();
    entry.starting = this.settle(entry, first);
    await entry.starting;
    const child = await first; // the first start's failure is the caller's
    if (!entry.child) throw new Error(`${name} started while the stack was stopping`);
    return child;
  }

  /** The live child of `name`, if it is running now. */
  child(name: string): ChildProcess | null {
    return this.entries.find((e) => e.name === name)?.child ?? null;
  }

  /** Stop restarting, then stop the children in reverse order of start (agent, API, then Temporal). */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const e of this.entries) if (e.timer) clearTimeout(e.timer);
    await Promise.all(this.entries.flatMap((e) => (e.starting ? [e.starting] : [])));
    for (const e of [...this.entries].reverse()) if (e.child) await stopChild(e.child);
  }

  private watch(entry: Entry, child: ChildProcess) {
    entry.child = child;
    entry.startedAt = Date.now();
    child.once('exit', (code, signal) => {
      entry.child = null;
      if (this.stopping) return;
      const why = code === null ? undefined : entry.final[code];
      if (why) this.log(`supervisor | not restarting ${entry.name}: it exited ${code} (${why})`);
      else this.restartLater(entry, code ?? signal ?? 'unknown', Date.now() - entry.startedAt);
    });
  }

  /** A start under way: watched once it is up, or stopped if the stack is stopping meanwhile. */
  private settle(entry: Entry, start: Promise<ChildProcess>, failed: (err: unknown) => void = () => undefined) {
    return start
      .then(async (child) => {
        if (this.stopping) await stopChild(child);
        else this.watch(entry, child);
      }, failed)
      .finally(() => {
        entry.starting = null;
      });
  }

  private restartLater(entry: Entry, exit: number | string, ranMs: number) {
    if (ranMs >= this.backoff.healthyAfterMs) entry.attempt = 0;
    entry.attempt += 1;
    const delay = restartDelay(entry.attempt, this.backoff);
    this.log(
      `supervisor | restarting ${entry.name} after exit ${exit} (attempt ${entry.attempt}, in ${delay / 1000}s)`,
    );
    entry.timer = setTimeout(() => {
      entry.timer = null;
      if (this.stopping) return;
      entry.starting = this.settle(entry, entry.start(), (err) => {
        this.log(`supervisor | ${entry.name} did not start: ${err instanceof Error ? err.message : String(err)}`);
        if (!this.stopping) this.restartLater(entry, 'start-failed', 0);
      });
    }, delay);
  }
}
