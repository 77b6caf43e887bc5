/**
 * `npm start` shows its children's JSON log lines for people: `[proc] message` (the level when it
 * is not info), then the fields an operator looks for (run, agent, route, status, ms, error).
 * Anything that is not a JSON log line is shown as it is. Production keeps the JSON.
 */

const SHOWN = ['runId', 'agentId', 'route', 'status', 'ms', 'outcome', 'result'] as const;

export function renderLogLine(line: string): string {
  if (!line.startsWith('{')) return line;
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const { msg, level, proc } = entry;
  if (typeof msg !== 'string' || typeof level !== 'string') return line;
  const text = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));
  const fields = SHOWN.filter((k) => entry[k] !== undefined && !msg.includes(text(entry[k])))
    .map((k) => `${k}=${text(entry[k])}`)
    .join(' ');
  const err = entry.err as { message?: unknown } | undefined;
  const error = typeof err?.message === 'string' ? ` (${err.message})` : '';
  const shown = level === 'info' ? '' : `${level.toUpperCase()} `;
  return `[${text(proc ?? '?')}] ${shown}${msg}${fields ? ` ${fields}` : ''}${error}`;
}

/** A stream's chunks as whole lines (a line may arrive in two chunks). */
export function lineSplitter(onLine: (line: string) => void): (chunk: Buffer) => void {
  let rest = '';
  return (chunk) => {
    const lines = (rest + chunk.toString()).split('\n');
    rest = lines.pop() ?? '';
    for (const l of lines) if (l) onLine(l);
  };
}

/** A whole captured output, each JSON log line rendered (tests match what a person would read). */
export const renderLog = (text: string) => text.split('\n').map(renderLogLine).join('\n');
