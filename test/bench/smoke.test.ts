import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';

const DIST = path.resolve(__dirname, '../..');

describe('npm run bench in smoke mode', () => {
  const resultsDir = mkdtempSync(path.join(os.tmpdir(), 'pn-bench-smoke-'));
  after(() => rmSync(resultsDir, { recursive: true, force: true }));

  it(
    'runs every scenario against the test run’s Temporal server, fails no run and writes the figures as JSON',
    { timeout: 240_000 },
    async () => {
      const args = [path.join(DIST, 'bench/run.js'), '--smoke', '--results-dir', resultsDir];
      // The test runner's dev server (same flags as npm start); without it the bench starts its own.
      if (process.env.TEMPORAL_ADDRESS) args.push('--temporal-address', process.env.TEMPORAL_ADDRESS);
      let output = '';
      const code = await new Promise<number | null>((resolve) => {
        // The bench's PostgreSQL is the tests' one unless PATCHNANNY_BENCH_PG says otherwise.
        const benchPg = process.env.PATCHNANNY_BENCH_PG ?? process.env.PATCHNANNY_TEST_PG;
        const child = spawn(process.execPath, args, {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, ...(benchPg ? { PATCHNANNY_BENCH_PG: benchPg } : {}) },
        });
        child.stdout.on('data', (d: Buffer) => (output += d.toString()));
        child.stderr.on('data', (d: Buffer) => (output += d.toString()));
        child.on('exit', resolve);
      });
      assert.equal(code, 0, output);
      assert.match(output, /scenario\s+metric\s+patchnanny\s+baseline\s+ratio/, 'prints the table');

      const files = readdirSync(resultsDir).filter((f) => f.endsWith('.json'));
      assert.equal(files.length, 1, `one results file, got ${files.join(', ')}`);
      const report = JSON.parse(readFileSync(path.join(resultsDir, files[0]), 'utf8'));
      assert.equal(report.smoke, true);
      for (const key of ['cores', 'memoryGb', 'node', 'temporalSdk']) assert.ok(report.machine[key], `machine.${key}`);

      for (const scenario of ['latency', 'throughput', 'approval', 'idleAgent', 'gate']) {
        assert.ok(report[scenario]?.patchnanny && report[scenario]?.baseline, `${scenario} has both sides`);
      }
      assert.ok(
        report.reads?.run?.patchnanny && report.reads?.list?.baseline,
        'reads has both endpoints and both sides',
      );

      assert.equal(report.latency.patchnanny.n, report.sizes.seq);
      assert.equal(report.latency.patchnanny.failed, 0, 'no failed sequential run');
      assert.equal(report.latency.baseline.failed, 0);
      assert.equal(report.throughput.patchnanny.failed, 0, 'no failed fleet run');
      assert.equal(report.throughput.baseline.failed, 0);
      assert.equal(report.approval.patchnanny.failed, 0, 'no failed approved run');
      assert.equal(report.approval.baseline.failed, 0);
      assert.ok(report.throughput.patchnanny.rowsPerRun.inserted > 0, 'database writes were counted');
      assert.equal(report.reads.run.patchnanny.non2xx, 0, 'API reads answered 2xx');
      assert.ok(report.idleAgent.patchnanny.rssAvgMb > 0, 'the idle agent was measured');
      assert.equal(report.gate.patchnanny.failed, 0, 'no failed run through the agent gate');
      assert.equal(report.gate.baseline.failed, 0);
      assert.equal(report.gate.polls.openCalls, report.sizes.gatePolls, 'every poller held a poll open at the gate');
      assert.equal(report.gate.polls.refused, 0, 'the gate refused no agent polling its own queue');
    },
  );
});
