/** Linux /proc readings of a process: resident memory, its peak, CPU time. */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

function statusKb(pid: number, field: string): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

export const rssMb = (pid: number): number | null => mb(statusKb(pid, 'VmRSS'));
/** Peak resident set since start or since the last resetPeak. */
export const peakRssMb = (pid: number): number | null => mb(statusKb(pid, 'VmHWM'));
const mb = (kb: number | null) => (kb === null ? null : Math.round(kb / 102.4) / 10);

/** Reset VmHWM to the current RSS (Linux ≥ 4.0, same user); false when the kernel refused. */
export function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** User + system CPU time of a process in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK; // utime, stime (fields 14, 15)
}

/** Samples RSS of some processes every `everyMs`; `stop` returns each one's maximum. */
export function sampleRss(pids: Record<string, number>, everyMs = 250): { stop(): Record<string, number | null> } {
  const max: Record<string, number | null> = Object.fromEntries(Object.keys(pids).map((k) => [k, null]));
  const tick = () => {
    for (const [name, pid] of Object.entries(pids)) {
      const v = rssMb(pid);
      if (v !== null && (max[name] === null || v > max[name])) max[name] = v;
    }
  };
  tick();
  const timer = setInterval(tick, everyMs);
  return {
    stop: () => {
      clearInterval(timer);
      tick();
      return max;
    },
  };
}
