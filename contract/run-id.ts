/**
 * Names of things in Temporal, defined once: a run's id is its workflow id
 * (`patch-run.<agentId>.<ulid>`), so the API, the CLI and the Temporal UI name a run the same
 * way. Zod-free: workflow code (deterministic `Date.now` and `Math.random`) names window runs
 * with the same function the API uses.
 */
const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** A ULID from a given clock and random source. */
export function ulidFrom(timeMs: number, random: () => number): string {
  let time = '';
  let t = Math.floor(timeMs);
  for (let i = 0; i < 10; i++) {
    time = CROCKFORD[t % 32] + time;
    t = Math.floor(t / 32);
  }
  let rand = '';
  for (let i = 0; i < 16; i++) rand += CROCKFORD[Math.floor(random() * 32)];
  return time + rand;
}

/** A container run of a Proxmox VE node names its container too: `patch-run.<agentId>.ct<vmid>.<ulid>`. */
export const RUN_ID_PATTERN = /^patch-run\.([a-z0-9][a-z0-9-]*)\.(?:ct([1-9][0-9]{2,8})\.)?([0-9A-HJKMNP-TV-Z]{26})$/;

export const newRunId = (agentId: string, timeMs: number, random: () => number, container?: number): string =>
  `patch-run.${agentId}.${container === undefined ? '' : `ct${container}.`}${ulidFrom(timeMs, random)}`;

/** The agent (and container) a run id names, or null when the text is not a run id. */
export function parseRunId(id: string): { agentId: string; ulid: string; container: number | null } | null {
  const m = RUN_ID_PATTERN.exec(id);
  return m ? { agentId: m[1], ulid: m[3], container: m[2] ? Number(m[2]) : null } : null;
}

/** Each host's agent polls its own task queue. */
export const agentTaskQueue = (agentId: string): string => `agent.${agentId}`;

/** A window's Temporal Schedule id; also the prefix of the workflow ids its firings start. */
export const windowScheduleId = (windowId: string): string => `window.${windowId}`;

/** The workflow that hands a host to one run at a time. */
export const hostLockId = (agentId: string): string => `host-lock.${agentId}`;
