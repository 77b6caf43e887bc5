/** The JSON log line itself: its fields, the SDK's lines mapped onto ours, redaction, and npm start's rendering. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createLog, logLevelOf, sdkLogger } from '../../runtime/log';
import { renderLogLine } from '../../scripts/dev/log-lines';

function captured(level: Parameters<typeof createLog>[1] = 'info') {
  const lines: string[] = [];
  const log = createLog('api', level, { write: (s: string) => void lines.push(s.trimEnd()) });
  return { log, entries: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>), lines };
}

describe('log lines', () => {
  it('are one JSON object with level as a word, an ISO time, the process and the message', () => {
    const { log, entries } = captured();
    log.info({ runId: 'patch-run.web-01.01ABC' }, 'run started');
    log.debug('not at info');
    const [e, ...rest] = entries();
    assert.equal(rest.length, 0, 'debug is below the default level');
    assert.equal(e.level, 'info');
    assert.equal(e.proc, 'api');
    assert.equal(e.msg, 'run started');
    assert.equal(e.runId, 'patch-run.web-01.01ABC');
    assert.equal(new Date(String(e.time)).toISOString(), e.time);
  });

  it('a patch run workflow’s SDK line carries its run id; Temporal’s execution id is kept apart', () => {
    const { log, entries } = captured();
    sdkLogger(log).info('Workflow started', {
      workflowId: 'patch-run.web-01.01ABC',
      runId: '0b1c2d3e-uuid',
      sdkComponent: 'workflow',
    });
    sdkLogger(log).warn('Worker state changed', { taskQueue: 'patch-control' });
    const [wf, worker] = entries();
    assert.equal(wf.runId, 'patch-run.web-01.01ABC');
    assert.equal(wf.temporalRunId, '0b1c2d3e-uuid');
    assert.equal(wf.component, 'temporal-sdk');
    assert.equal(worker.level, 'warn');
    assert.equal(worker.runId, undefined, 'a line about no run names none');
  });

  it('credential fields are redacted whatever a caller passes', () => {
    const { log, lines } = captured();
    log.info({ token: 'agt-secret-1', headers: { authorization: 'Bearer adm-secret-2' } }, 'oops');
    assert.doesNotMatch(lines.join('\n'), /secret-1|secret-2/);
  });

  it('PATCHNANNY_LOG_LEVEL takes the SDK’s upper-case spelling and falls back to info', () => {
    assert.equal(logLevelOf({ PATCHNANNY_LOG_LEVEL: 'WARN' }), 'warn');
    assert.equal(logLevelOf({ PATCHNANNY_LOG_LEVEL: 'loud' }), 'info');
    assert.equal(logLevelOf({}), 'info');
  });

  it('npm start renders a JSON line for people and leaves any other line as it is', () => {
    const line = JSON.stringify({
      level: 'warn',
      time: '2026-11-30T16:00:00.000Z',
      proc: 'api',
      runId: 'patch-run.web-01.01ABC',
      msg: 'run ended: failed',
    });
    assert.equal(renderLogLine(line), '[api] WARN run ended: failed runId=patch-run.web-01.01ABC');
    assert.equal(
      renderLogLine(
        JSON.stringify({ level: 'info', proc: 'agent', agentId: 'web-01', msg: 'web-01 polling agent.web-01' }),
      ),
      '[agent] web-01 polling agent.web-01',
    );
    assert.equal(renderLogLine('plain text {'), 'plain text {');
    assert.equal(renderLogLine('{"not":"a log line"}'), '{"not":"a log line"}');
  });
});
