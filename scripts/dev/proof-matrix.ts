/**
 * The proof matrix (issue 16): every case of the table-driven patch-script proof
 * (test/scripts/proof-suite.ts) for every package family and Debian generation. Each proof file
 * records its cells as JSON lines in the file named by PATCHNANNY_PROOF_MATRIX (set by
 * scripts/dev/test.ts for the whole run); test.ts prints them as one table at the end.
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';

export const MATRIX_ENV = 'PATCHNANNY_PROOF_MATRIX';

export const MATRIX_GENERATIONS = ['bullseye', 'bookworm', 'trixie', 'sid'] as const;

/**
 * The rows (a family, and the manager when one family has several) and the generations each is
 * proven on; a generation left out carries the reason, printed under the table.
 */
/** Why the rpm, zypper and pacman proofs do not run in a Debian 11 root. */
const NOT_ON_BULLSEYE = 'only apt is proven on Debian 11 (docs/package-managers.md, Generations)';

export const MATRIX_ROWS: { row: string; notProven: Partial<Record<(typeof MATRIX_GENERATIONS)[number], string>> }[] = [
  { row: 'apt', notProven: {} },
  { row: 'dnf', notProven: { bullseye: NOT_ON_BULLSEYE } },
  {
    row: 'dnf (dnf5)',
    notProven: {
      bullseye: 'Debian 11 has no dnf5',
      bookworm: 'Debian 12 has no dnf5',
      trixie: 'Debian 13 has no dnf5',
    },
  },
  { row: 'yum', notProven: { bullseye: NOT_ON_BULLSEYE } },
  { row: 'zypper', notProven: { bullseye: NOT_ON_BULLSEYE } },
  { row: 'pacman', notProven: { bullseye: NOT_ON_BULLSEYE } },
];

export interface MatrixCell {
  row: string;
  generation: string;
  /** Short case id (a column). */
  case: string;
  /** The case's full title, for the legend. */
  title: string;
  /** The case's place in the proof (the column order). */
  index: number;
  ok: boolean;
  /** Why the case did not run on this row and generation (`smoke only`); then ok is false and means nothing. */
  notRun?: string;
  /** The manager version the cell ran against (`apt 3.0.3`), when the proof knows it. */
  version?: string;
}

/** Record one cell: appended to the run's matrix file, or kept for printCellsAtExit. */
const local: MatrixCell[] = [];
let printAtExit = false;
export function recordCell(cell: MatrixCell): void {
  const file = process.env[MATRIX_ENV];
  if (file) {
    appendFileSync(file, `${JSON.stringify(cell)}\n`);
    return;
  }
  local.push(cell);
  if (!printAtExit) {
    printAtExit = true;
    // A proof file run on its own (not through test.ts): print its own part of the matrix.
    process.once('exit', () => console.log(formatMatrix(local)));
  }
}

export function readCells(file: string): MatrixCell[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as MatrixCell);
}

/** The matrix as one text table: a row per family × generation, a column per case. */
export function formatMatrix(cells: MatrixCell[]): string {
  if (cells.length === 0) return 'proof matrix: no proof ran';
  const cases: { id: string; title: string; index: number }[] = [];
  for (const c of cells)
    if (!cases.some((x) => x.id === c.case)) cases.push({ id: c.case, title: c.title, index: c.index });
  cases.sort((a, b) => a.index - b.index);
  const byKey = new Map<string, MatrixCell[]>();
  for (const c of cells) {
    const key = `${c.row}\0${c.generation}`;
    byKey.set(key, [...(byKey.get(key) ?? []), c]);
  }
  const lines: string[] = [];
  const head = ['family', 'generation', 'manager', ...cases.map((_, i) => String(i + 1)), 'result'];
  const rows: string[][] = [];
  const notes: string[] = [];
  let failed = 0;
  for (const { row, notProven } of MATRIX_ROWS) {
    for (const gen of MATRIX_GENERATIONS) {
      const mine = byKey.get(`${row}\0${gen}`);
      byKey.delete(`${row}\0${gen}`);
      if (!mine) {
        const reason = notProven[gen];
        if (reason && cells.some((c) => c.row === row))
          rows.push([row, gen, '', ...cases.map(() => '-'), `unsupported: ${reason}`]);
        else if (cells.some((c) => c.row === row)) notes.push(`${row} on ${gen}: not selected in this run`);
        continue;
      }
      rows.push(rowOf(row, gen, mine));
    }
  }
  // Rows the table does not know (a new family): shown, never dropped.
  for (const mine of byKey.values()) rows.push(rowOf(mine[0].row, mine[0].generation, mine));
  function rowOf(row: string, gen: string, mine: MatrixCell[]): string[] {
    const ran = mine.filter((c) => !c.notRun);
    const bad = ran.filter((c) => !c.ok).length;
    failed += bad;
    const skipped = new Map<string, number>();
    for (const c of mine) if (c.notRun) skipped.set(c.notRun, (skipped.get(c.notRun) ?? 0) + 1);
    const version = mine.find((c) => c.version)?.version ?? '';
    const marks = cases.map((k) => {
      const c = mine.find((x) => x.case === k.id);
      return c ? (c.notRun ? 'n/r' : c.ok ? 'ok' : 'FAIL') : '-';
    });
    const result = [bad ? `${bad} of ${ran.length} FAILED` : `${ran.length} passed`];
    for (const [why, n] of skipped) result.push(`${n} not run (${why})`);
    return [row, gen, version, ...marks, result.join(', ')];
  }
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r: string[]) =>
    r
      .map((v, i) => v.padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  lines.push('', 'Patch-script proof matrix (family × generation × case)', fmt(head));
  lines.push(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) lines.push(fmt(r));
  lines.push('', 'cases:');
  cases.forEach((k, i) => lines.push(`  ${String(i + 1).padStart(2)}  ${k.title}`));
  if (notes.length) lines.push('', 'not in the matrix:', ...notes.map((n) => `  ${n}`));
  const notRun = cells.filter((c) => c.notRun).length;
  lines.push(
    '',
    `${cells.length - notRun} cells ran, ${failed} failed, ${notRun} not run (smoke only: docs/package-managers.md says why); ` +
      `'n/r' = not run, '-' = no such case for that row`,
  );
  return lines.join('\n');
}
