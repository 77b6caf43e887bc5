import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';

const gone = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null;

/** SIGTERM a child and wait for it; SIGKILL if it has not gone after `graceMs`. Gone already: resolves at once. */
export function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  return new Promise<void>((resolve) => {
    if (gone(child)) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
    setTimeout(() => !gone(child) && child.kill('SIGKILL'), graceMs).unref();
  });
}

/** Wait until `GET <url>/healthz` answers 200; fail early if the process exits first. */
export async function waitForHealth(
  url: string,
  child: ChildProcess,
  hint = '',
  timeoutMs = 60_000,
  what = 'the API',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (gone(child)) throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) during start-up${hint}`);
    try {
      if ((await fetch(`${url}/healthz`)).ok) return;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) throw new Error(`${what} did not become healthy at ${url}${hint}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * spawn() with the child's stdout and stderr appended straight to `logFile`: the child writes the
 * file itself. Piping them through this process instead makes a busy parent (the benchmark's
 * driver) a brake on the child — a Temporal server or a worker that logs synchronously blocks on
 * a full pipe until the parent's event loop comes round to read it.
 */
export function spawnLogged(
  command: string,
  args: string[],
  logFile: string,
  options: SpawnOptions = {},
): ChildProcess {
  const fd = openSync(logFile, 'a');
  try {
    return spawn(command, args, { ...options, stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd); // the child holds its own copy
  }
}
