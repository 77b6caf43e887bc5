/** Messages between the benchmark driver (run.ts) and the processes it forks. */
import { fork, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';

export type ChildMessage =
  | { type: 'ready'; workers: number; startMs: number; port?: number }
  /** A baseline activity finished: `dryRun` on a host, `report` on the control queue. */
  | { type: 'activity'; name: 'dryRun' | 'report'; workflowId: string; at: number };

/** Send to the parent when there is one (the benchmark forks with an IPC channel). */
export function tell(msg: ChildMessage): void {
  process.send?.(msg);
}

export interface Forked {
  child: ChildProcess;
  ready: Promise<Extract<ChildMessage, { type: 'ready' }>>;
  on(listener: (msg: ChildMessage) => void): void;
  /** SIGKILL: simulated hosts and baseline workers have nothing to flush. */
  kill(): Promise<void>;
}

/** Fork a compiled bench module with an IPC channel, its output appended to `logFile`. */
export function forkModule(modulePath: string, args: string[], logFile: string, env: NodeJS.ProcessEnv = {}): Forked {
  // The child appends to its log file itself (see spawnLogged in scripts/dev/processes.ts).
  const fd = openSync(logFile, 'a');
  const child = fork(modulePath, args, { env: { ...process.env, ...env }, stdio: ['ignore', fd, fd, 'ipc'] });
  closeSync(fd);
  const ready = new Promise<Extract<ChildMessage, { type: 'ready' }>>((resolve, reject) => {
    child.on('message', (m: ChildMessage) => m.type === 'ready' && resolve(m));
    child.once('exit', (code) => reject(new Error(`${modulePath} exited ${code} before it was ready; see ${logFile}`)));
  });
  ready.catch(() => undefined);
  return {
    child,
    ready,
    on: (listener) => child.on('message', listener),
    kill: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  };
}
