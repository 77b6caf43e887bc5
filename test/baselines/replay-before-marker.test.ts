/**
 * Runs recorded before `patched('baseline-approval')` (workflows/patch-run.ts) must replay with
 * today's code: a worker restarted mid-approval replays them, and a nondeterminism error there
 * would stall every run that was waiting for a person when issue 12 was deployed.
 *
 * The fixture is a real history, recorded by the code of commit 2cea342 (the last before the
 * baselines merge) against a Temporal dev server with scripts/dev/record-history.ts: one apply
 * with `approval: required`, a signed approval by alice, completed. Recipe in docs/testing.md.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { temporal } from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { workflowSource } from '../../runtime/temporal';
import { DIST } from '../support/stack';

const FIXTURE = path.join(DIST, '../test/fixtures/histories/patch-run-before-baseline-approval.json');
type History = temporal.api.history.v1.History;
type HistoryEvent = temporal.api.history.v1.IHistoryEvent;
const EventType = temporal.api.enums.v1.EventType;

const load = (): History => temporal.api.history.v1.History.fromObject(JSON.parse(readFileSync(FIXTURE, 'utf8')));
const decode = (data: Uint8Array | null | undefined) => Buffer.from(data ?? []).toString('utf8');
/** What a marker or event says in its payloads, decoded (the fixture holds them as JSON bytes). */
const payloadText = (e: HistoryEvent) =>
  [
    ...Object.values(e.markerRecordedEventAttributes?.details ?? {}).flatMap((p) => p.payloads ?? []),
    ...(e.workflowExecutionCompletedEventAttributes?.result?.payloads ?? []),
  ]
    .map((p) => decode(p.data))
    .join('\n');
const replay = (history: History) =>
  Worker.runReplayHistory({ ...workflowSource(), replayName: 'patch-run-before-baseline-approval' }, history);

describe('a patch run recorded before the baseline-approval marker', () => {
  it('is what it claims: approved by a person, completed, and no baseline was ever evaluated', () => {
    const events = load().events ?? [];
    const kinds = events.map((e) => e.eventType);
    assert.equal(kinds[0], EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED);
    assert.equal(events[0].workflowExecutionStartedEventAttributes?.workflowType?.name, 'patchRun');
    assert.equal(kinds.at(-1), EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED);
    assert.match(payloadText(events.at(-1)!), /"outcome":"completed"/);
    // The person's signed approval arrived as the approve update.
    const update = events.find((e) => e.eventType === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED);
    assert.equal(update?.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input?.name, 'approve');
    const text = events.map(payloadText).join('\n');
    assert.match(text, /"activity_type":"recordDecision"/);
    assert.doesNotMatch(text, /evaluateBaselines|baseline-approval/, 'recorded before the marker existed');
  });

  it('replays with today’s workflow code without a nondeterminism error', async () => {
    await replay(load());
  });

  it('the replay does compare: the same history with one recorded step changed is refused', async () => {
    const history = load();
    const marker = (history.events ?? []).find((e) => /"activity_type":"recordDecision"/.test(payloadText(e)));
    assert.ok(marker, 'the recordDecision local activity marker');
    for (const p of Object.values(marker.markerRecordedEventAttributes!.details!).flatMap((d) => d.payloads ?? []))
      p.data = Buffer.from(decode(p.data).replace('"recordDecision"', '"evaluateBaselines"'));
    await assert.rejects(replay(history), /nondetermin|mismatch/i);
  });
});
