import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { temporal } from '@temporalio/proto';
import { BINDING_FIELD, bindToken, unbindToken } from '../../gate/binding';
import { encodeVarint, fields, getBytesField, readVarint, replaceBytesField, WireError } from '../../gate/wire';

const ws = temporal.api.workflowservice.v1;
const KEY = randomBytes(32);

/** A poll response as the frontend sends it, plus a field this SDK does not know (a newer server's). */
function pollResponse(token: Uint8Array): Buffer {
  const known = Buffer.from(
    ws.PollActivityTaskQueueResponse.encode({
      taskToken: token,
      workflowNamespace: 'default',
      activityId: '7',
      activityType: { name: 'scriptExecute' },
      attempt: 3,
      input: { payloads: [{ data: randomBytes(3 * 1024 * 1024) }] }, // a big payload
    }).finish(),
  );
  const unknown = Buffer.concat([encodeVarint(999 * 8 + 2), encodeVarint(5), Buffer.from('newer')]);
  return Buffer.concat([known, unknown]);
}

describe('gate wire format and token binding', () => {
  it('varints round-trip, including the 10-byte edge and multi-byte lengths', () => {
    for (const v of [0, 1, 127, 128, 300, 16_383, 16_384, 2 ** 31, 2 ** 35 + 7, Number.MAX_SAFE_INTEGER]) {
      const enc = encodeVarint(v);
      assert.deepEqual(readVarint(enc, 0), { value: v, next: enc.length });
    }
    assert.throws(() => readVarint(Buffer.from([0x80, 0x80]), 0), WireError);
    assert.throws(() => encodeVarint(-1), WireError);
  });

  it('replacing the task token changes that field only: every other byte, unknown fields too, survives', () => {
    const token = randomBytes(80);
    const res = pollResponse(token);
    const out = replaceBytesField(res, 1, (t) => Buffer.concat([t, Buffer.from('!!')]));
    assert.equal(out.length, res.length + 2);
    const decoded = ws.PollActivityTaskQueueResponse.decode(out);
    assert.deepEqual(Buffer.from(decoded.taskToken), Buffer.concat([token, Buffer.from('!!')]));
    assert.equal(decoded.attempt, 3);
    assert.equal(decoded.input!.payloads![0].data!.length, 3 * 1024 * 1024);
    // the unknown field 999 is still the last thing in the message, byte for byte
    const last = fields(out).at(-1)!;
    assert.equal(last.number, 999);
    assert.equal(out.subarray(last.valueStart, last.end).toString(), 'newer');
    // and undoing the change gives back the very same bytes
    assert.deepEqual(
      replaceBytesField(out, 1, (t) => t.subarray(0, t.length - 2)),
      res,
    );
  });

  it('a response without a token (a long poll that timed out) is left as it is', () => {
    const empty = Buffer.alloc(0);
    assert.equal(
      replaceBytesField(empty, 1, () => Buffer.from('x')),
      empty,
    );
  });

  it('truncated or malformed input is refused, never half-read', () => {
    const res = pollResponse(randomBytes(40));
    for (const cut of [1, 2, 10, res.length - 1]) assert.throws(() => fields(res.subarray(0, cut)), WireError);
    assert.throws(() => fields(Buffer.from([0x0b])), WireError); // wire type 3 (group)
    assert.throws(() => fields(Buffer.from([0x00, 0x01])), WireError); // field number 0
    const twice = Buffer.concat([Buffer.from([0x0a, 1, 0x41]), Buffer.from([0x0a, 1, 0x42])]);
    assert.throws(() => getBytesField(twice, 1), /occurs 2 times/);
  });

  it('a bound token carries field 15 last, still decodes as the server’s token, and unbinds to the original', () => {
    const original = Buffer.from(
      // any protobuf message stands in for the server's token (tokenspb.Task is not in the SDK)
      temporal.api.common.v1.WorkflowExecution.encode({ workflowId: 'patch-run.a.X', runId: 'r' }).finish(),
    );
    const bound = bindToken(KEY, 'agent.a', original);
    const last = fields(bound).at(-1)!;
    assert.equal(last.number, BINDING_FIELD);
    assert.equal(last.end - last.valueStart, 32);
    assert.equal(temporal.api.common.v1.WorkflowExecution.decode(bound).workflowId, 'patch-run.a.X');
    const back = unbindToken(KEY, 'agent.a', bound);
    assert.ok(back.ok);
    assert.deepEqual(back.token, original);
  });

  it('a token bound to another queue, tampered with, unbound, or bound with another key is refused', () => {
    const original = Buffer.from([0x0a, 3, 1, 2, 3, 0x10, 5]);
    const bound = bindToken(KEY, 'agent.a', original);
    assert.equal(unbindToken(KEY, 'agent.b', bound).ok, false, 'borrowed by another agent');
    assert.equal(unbindToken(KEY, 'agent.a', original).ok, false, 'no binding (straight from Temporal)');
    assert.equal(unbindToken(randomBytes(32), 'agent.a', bound).ok, false, 'another gate key');
    const tampered = Buffer.from(bound);
    tampered[4] ^= 1; // inside the original token: the MAC no longer matches
    assert.equal(unbindToken(KEY, 'agent.a', tampered).ok, false, 'token changed');
    const macFlipped = Buffer.from(bound);
    macFlipped[macFlipped.length - 1] ^= 1;
    assert.equal(unbindToken(KEY, 'agent.a', macFlipped).ok, false, 'MAC changed');
    assert.equal(unbindToken(KEY, 'agent.a', bound.subarray(0, bound.length - 1)).ok, false, 'truncated');
    // a second binding field after the real one is not the gate's (only one, last, 32 bytes)
    const doubled = Buffer.concat([bound, Buffer.from([0x7a, 1, 0])]);
    assert.equal(unbindToken(KEY, 'agent.a', doubled).ok, false, 'extra field appended');
  });
});
