/**
 * Task-token binding: the gate hands an agent a task token with one extra protobuf field (15,
 * length-delimited) holding HMAC-SHA256(key, queue ‖ 0x00 ‖ original token). Temporal's tokens are
 * unsigned and name no task queue (server 1.29.1 completed another queue's activity with a
 * hand-built token), so this is what lets the gate refuse a token the caller did not receive on its
 * own queue. Stateless: any gate holding the same key verifies any other's tokens, and a restart
 * loses nothing. SDK workers treat tokens as opaque bytes and send them back unchanged; the extra
 * field also keeps the token a valid protobuf message.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { encodeLenField, fields, WIRE_LEN } from './wire';

export const BINDING_FIELD = 15;
const MAC_BYTES = 32;

function mac(key: Buffer, queue: string, token: Uint8Array): Buffer {
  return createHmac('sha256', key).update(queue).update(Buffer.of(0)).update(token).digest();
}

/** The token as the agent polling `queue` receives it. */
export function bindToken(key: Buffer, queue: string, token: Uint8Array): Buffer {
  return Buffer.concat([token, encodeLenField(BINDING_FIELD, mac(key, queue, token))]);
}

/**
 * The original token when `bound` carries a valid binding to `queue`; otherwise why not. The
 * binding must be the token's last field (the gate appends it); anything else — no binding, a
 * binding for another queue, a changed token, bytes that are not a protobuf message — is refused.
 */
export function unbindToken(
  key: Buffer,
  queue: string,
  bound: Uint8Array,
): { ok: true; token: Buffer } | { ok: false; why: string } {
  let all;
  try {
    all = fields(bound);
  } catch (err) {
    return { ok: false, why: `task token is not a protobuf message (${(err as Error).message})` };
  }
  const last = all.at(-1);
  if (!last || last.number !== BINDING_FIELD || last.wireType !== WIRE_LEN || last.end - last.valueStart !== MAC_BYTES)
    return { ok: false, why: 'task token carries no gate binding' };
  const token = Buffer.from(bound.subarray(0, last.start));
  const given = Buffer.from(bound.subarray(last.valueStart, last.end));
  if (!timingSafeEqual(given, mac(key, queue, token)))
    return { ok: false, why: `task token was not handed out on ${queue}` };
  return { ok: true, token };
}
