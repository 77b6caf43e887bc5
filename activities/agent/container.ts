/**
 * A script execution inside a Proxmox VE container, driven by the node's agent through `pct`
 * (docs/proxmox.md): check the container's state, start it if asked, snapshot before an apply,
 * deliver the verified bytes on stdin, roll back a failed apply if asked, stop it again.
 */
import { ApplicationFailure } from '@temporalio/activity';
import { z } from 'zod';
import type { ContainerReport, Family } from '../../contract';
import { PCT_ENV, Pct, PctError } from './pct';

/** What the workflow asks of a container run (validated at the boundary, strictly). */
export const ContainerTarget = z.strictObject({
  vmid: z.number().int().min(100).max(999_999_999),
  startIfStopped: z.boolean(),
  snapshot: z.enum(['none', 'keep', 'rollback']),
});
export type ContainerTarget = z.infer<typeof ContainerTarget>;

/** The node side: its pct, how a container's family is detected, how many patchnanny snapshots to keep. */
export interface ContainerHost {
  pct: Pct;
  /** The container's patch family, or why it has none (detected now: the container may have changed). */
  familyOf(vmid: number): Promise<Family | { unsupported: string }>;
  /** Patchnanny snapshots kept per container; older ones are deleted after a successful snapshot. */
  snapshotKeep: number;
}

/** Failure types the workflow maps to outcomes (workflows/patch-run.ts). */
export const CONTAINER_FAILURES = {
  gone: 'container-gone',
  stopped: 'container-stopped',
  locked: 'container-locked',
  unsupported: 'container-unsupported',
  snapshotUnsupported: 'container-snapshot-unsupported',
} as const;

/**
 * How the verified bytes reach bash inside the container: on stdin, read whole by `cat` into a
 * variable before anything runs, then run with `bash -c` and stdin from /dev/null. Nothing is
 * written to the container's disk (no path another process there could swap between check and
 * run), and no command in the script can read the script's own text from stdin. A fixed string:
 * nothing from a name or a package is ever part of it; the script's arguments follow as argv.
 */
export const CONTAINER_BOOTSTRAP = 'script=$(cat) && exec /bin/bash -c "$script" "$0" "$@" </dev/null';

/** The argv of `pct` that runs the script inside the container with these script arguments. */
export function containerExecArgv(vmid: number, scriptArgs: readonly string[]): string[] {
  return ['exec', String(vmid), '--', '/bin/bash', '-c', CONTAINER_BOOTSTRAP, 'patchnanny-script', ...scriptArgs];
}

/** The environment pct exec carries into the container (its default --keep-env): never the agent's. */
export function containerEnvironment(runId: string, extra: Record<string, string> = {}): Record<string, string> {
  return { ...PCT_ENV, ...extra, PATCHNANNY_RUN_ID: runId };
}

/** Snapshots patchnanny takes are named after the run: `patchnanny-<ulid>` (PVE allows 40 characters). */
export const snapshotName = (runId: string): string => `patchnanny-${runId.slice(runId.lastIndexOf('.') + 1)}`;

const fail = (message: string, type: string) => ApplicationFailure.nonRetryable(message, type);

export interface PreparedContainer {
  family: Family;
  report: ContainerReport;
  /** Undo what preparing did (stop a container started for the run). */
  release(): Promise<void>;
}

/**
 * Before a script runs in a container: it must be on this node, unlocked, supported and running
 * (or started, when the run asked for it). Nothing in the container has changed when this throws.
 */
export async function prepareContainer(
  host: ContainerHost,
  target: ContainerTarget,
  log: (line: string) => void,
): Promise<PreparedContainer> {
  const { pct } = host;
  const { vmid } = target;
  const config = await pct.config(vmid);
  if (!config) throw fail(`container ${vmid} is not on this node (destroyed or migrated)`, CONTAINER_FAILURES.gone);
  if (config.lock)
    // Retried by the workflow with backoff within the run's lock wait, then skipped-container-locked.
    throw fail(`container ${vmid} is locked (${config.lock})`, CONTAINER_FAILURES.locked);
  const status = await pct.status(vmid);
  if (status === null) throw fail(`container ${vmid} is not on this node`, CONTAINER_FAILURES.gone);
  const report: ContainerReport = { vmid, startedAndStopped: false, snapshot: null, rolledBack: false, pruned: [] };
  let release = async () => {};
  if (status !== 'running') {
    if (!target.startIfStopped)
      throw fail(
        `container ${vmid} is ${status}; the run did not ask to start it (startIfStopped)`,
        CONTAINER_FAILURES.stopped,
      );
    await startContainer(pct, vmid);
    log(`container ${vmid} was ${status}: started for the run`);
    report.startedAndStopped = true;
    release = async () => {
      await pct.must(['shutdown', String(vmid)]);
      log(`container ${vmid} stopped again`);
    };
  }
  try {
    const family = await host.familyOf(vmid);
    if (typeof family === 'object')
      throw fail(`container ${vmid}: ${family.unsupported}`, CONTAINER_FAILURES.unsupported);
    return { family, report, release };
  } catch (err) {
    await release();
    throw err;
  }
}

async function startContainer(pct: Pct, vmid: number): Promise<void> {
  try {
    await pct.must(['start', String(vmid)]);
  } catch (err) {
    if (err instanceof PctError && err.locked)
      throw fail(`container ${vmid} is locked (${err.locked})`, CONTAINER_FAILURES.locked);
    throw err;
  }
}

/**
 * Snapshot before an apply. A storage that cannot snapshot is refused here, before anything in
 * the container changed; older patchnanny snapshots beyond the kept count are deleted after.
 */
export async function snapshotBeforeApply(
  host: ContainerHost,
  prepared: PreparedContainer,
  runId: string,
  log: (line: string) => void,
): Promise<void> {
  const { pct } = host;
  const { vmid } = prepared.report;
  const name = snapshotName(runId);
  try {
    await pct.must(['snapshot', String(vmid), name]);
  } catch (err) {
    if (err instanceof PctError && err.snapshotUnsupported)
      throw fail(
        `container ${vmid}: its storage cannot snapshot (${err.message}); nothing was changed`,
        CONTAINER_FAILURES.snapshotUnsupported,
      );
    if (err instanceof PctError && err.locked)
      throw fail(`container ${vmid} is locked (${err.locked})`, CONTAINER_FAILURES.locked);
    throw err;
  }
  prepared.report.snapshot = name;
  log(`container ${vmid}: snapshot ${name} taken before apply`);
  const ours = (await pct.snapshots(vmid)).filter((s) => s.startsWith('patchnanny-'));
  for (const old of ours.slice(0, Math.max(0, ours.length - host.snapshotKeep))) {
    await pct.must(['delsnapshot', String(vmid), old]);
    prepared.report.pruned.push(old);
  }
}

/** Roll a failed apply back to the snapshot taken before it; the container runs again afterwards. */
export async function rollBack(host: ContainerHost, prepared: PreparedContainer, log: (line: string) => void) {
  const { vmid, snapshot } = prepared.report;
  if (!snapshot) return;
  await host.pct.must(['rollback', String(vmid), snapshot, '--start', '1']);
  prepared.report.rolledBack = true;
  log(`container ${vmid}: failed apply rolled back to ${snapshot}`);
}
