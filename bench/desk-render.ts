/**
 * The review page with a large backlog (issue 17): N runs awaiting approval in G plan groups,
 * measured in a real headless Chromium. Prints the page's weight and the time from navigation to
 * the review list drawn (every group in the DOM), plus GET /v1/reviews on its own. Asserts nothing.
 *
 *   node dist/bench/desk-render.js [--runs 1000] [--groups 10] [--packages 20] [--repeat 5]
 *   PN_DESK_TRACE=1 …   also prints each request's start and end (ms since navigation)
 *
 * The waiting runs are rows written straight into a scratch database (agents, runs, plan rows):
 * the list reads only the database, so no workflow or agent is needed to measure it (an approval
 * would need them; bench scenario 3 measures approvals at scale).
 */
import { randomInt } from 'node:crypto';
import type { Server } from 'node:http';
import { parseArgs } from 'node:util';
import { Client } from '@temporalio/client';
import { chromium } from 'playwright-core';
import { createApp } from '../api/app';
import { newRunId } from '../contract';
import { sha256Hex } from '../contract/plan-hash';
import { migrate } from '../db';
import { createScratchDatabase } from '../scripts/dev/scratch-db';

const SERVER = process.env.PATCHNANNY_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const TOKEN = 'bench-desk-token-0123456789';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '1000' },
      groups: { type: 'string', default: '10' },
      packages: { type: 'string', default: '20' },
      repeat: { type: 'string', default: '5' },
    },
  });
  const runs = Number(values.runs);
  const groups = Number(values.groups);
  const packages = Number(values.packages);
  const repeat = Number(values.repeat);
  const database = await createScratchDatabase(SERVER, 'pn_bench_desk', 8);
  let server: Server | undefined;
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu'],
  });
  try {
    const { db } = database;
    await migrate(db);
    const agents = Array.from({ length: runs }, (_, i) => ({
      id: `host-${String(i).padStart(5, '0')}`,
      hostname: `host-${String(i).padStart(5, '0')}.example`,
      os_id: 'debian',
      os_version: '12',
      os_pretty_name: 'Debian 12',
      family: 'apt',
      package_manager: 'apt',
      token_hash: sha256Hex(`agent-${i}`),
      status: 'accepted',
      last_seen_at: new Date(),
    }));
    await db.batchInsert('agents', agents, 500);
    const now = Date.now();
    const runRows = agents.map((a, i) => ({
      id: newRunId(a.id, now - i * 1000, () => randomInt(32) / 32),
      agent_id: a.id,
      mode: 'apply',
      approval: 'required',
      phase: 'awaiting-approval',
      requested_by: 'bench',
      plan_hash: sha256Hex(`plan-${i % groups}`),
      exclusions: JSON.stringify(i % 7 === 0 ? ['linux-image-*'] : []),
      reboot_required: i % 5 === 0,
      reboot_reason: i % 5 === 0 ? 'kernel' : null,
    }));
    await db.batchInsert('patch_runs', runRows, 500);
    const pkgRows = runRows.flatMap((r, i) => [
      ...Array.from({ length: packages }, (_, p) => ({
        run_id: r.id,
        kind: 'planned',
        name: `pkg-${p}`,
        arch: 'amd64',
        current: '1.0-1',
        candidate: `1.0-${2 + (i % groups)}`,
        repo: p % 4 === 0 ? 'bookworm-security' : 'bookworm',
        action: 'upgrade',
      })),
      ...(i % 7 === 0
        ? [
            {
              run_id: r.id,
              kind: 'held',
              name: 'linux-image-amd64',
              arch: 'amd64',
              current: '6.1-1',
              candidate: '6.1-2',
              repo: 'bookworm',
              action: 'upgrade',
            },
          ]
        : []),
    ]);
    await db.batchInsert('run_packages', pkgRows, 1000);

    const app = createApp({
      db,
      temporal: new Client(), // lazy: the list never calls Temporal
      admins: [{ name: 'bench', token: TOKEN }],
      controlQueue: 'unused',
      runDefaults: { approvalMs: 60_000, agentPickupMs: 60_000, scriptMs: 60_000 },
    });
    server = app.listen(0, '127.0.0.1');
    await new Promise<void>((r) => server!.once('listening', () => r()));
    const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;

    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    /** Each read the page makes, on its own: size and median time. */
    const reads: string[] = [];
    for (const route of ['/v1/reviews', '/v1/compliance', '/v1/agents']) {
      const ms: number[] = [];
      let size = 0;
      for (let i = 0; i < repeat; i++) {
        const t = performance.now();
        const res = await fetch(`${base}${route}`, { headers: { authorization: `Bearer ${TOKEN}` } });
        size = (await res.arrayBuffer()).byteLength;
        ms.push(performance.now() - t);
      }
      reads.push(`  GET ${route.padEnd(45)}${(size / 1024).toFixed(0)} KB, median ${median(ms).toFixed(0)} ms`);
    }

    const renderMs: number[] = [];
    let pageBytes = 0;
    for (let i = 0; i < repeat; i++) {
      const context = await browser.newContext();
      await context.addInitScript(`sessionStorage.setItem('patchnanny.token', ${JSON.stringify(TOKEN)})`);
      const page = await context.newPage();
      let bytes = 0;
      page.on('response', (r) => {
        if (!r.url().includes('/v1/'))
          void r
            .body()
            .then((b) => (bytes += b.length))
            .catch(() => undefined);
      });
      await page.goto(`${base}/`);
      await page
        .locator('#groups article.group')
        .nth(groups - 1)
        .waitFor({ timeout: 60_000 });
      // Milliseconds since navigation start, in the page's own clock.
      renderMs.push(Number(await page.evaluate('performance.now()')));
      if (process.env.PN_DESK_TRACE)
        console.log(
          await page.evaluate(
            `JSON.stringify(performance.getEntriesByType('resource').map((e) => [e.name.replace(location.origin, ''), Math.round(e.startTime), Math.round(e.responseEnd)]))`,
          ),
        );
      const drawn = Number(await page.evaluate(`document.querySelectorAll('#groups tr[data-run]').length`));
      if (drawn !== runs) throw new Error(`the page drew ${drawn} waiting runs, not ${runs}`);
      pageBytes = bytes;
      await context.close();
    }
    console.log(`review desk, ${runs} runs awaiting approval in ${groups} groups of ${packages} packages:`);
    console.log(`  page weight (HTML + CSS + JS, uncompressed)      ${(pageBytes / 1024).toFixed(1)} KB`);
    for (const line of reads) console.log(line);
    console.log(
      `  navigation → review list drawn (median of ${repeat}) ${median(renderMs).toFixed(0)} ms (all: ${renderMs.map((x) => x.toFixed(0)).join(', ')})`,
    );
  } finally {
    await browser.close();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    await database.drop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
