/**
 * The few pieces of the protobuf wire format the gate needs to rewrite one bytes field of a
 * message it otherwise passes through untouched. Decoding and re-encoding whole messages with
 * protobufjs would drop the fields this SDK's descriptors do not know (a newer server's), so
 * the gate walks the raw bytes instead. Everything here refuses malformed input with a throw.
 */

export const WIRE_VARINT = 0;
export const WIRE_I64 = 1;
export const WIRE_LEN = 2;
export const WIRE_I32 = 5;

export class WireError extends Error {}

/** A varint at `pos`: its value (≤ 2^53) and the position after it. */
export function readVarint(buf: Uint8Array, pos: number): { value: number; next: number } {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos + i >= buf.length) throw new WireError('truncated varint');
    const byte = buf[pos + i];
    value += (byte & 0x7f) * scale;
    if (value > Number.MAX_SAFE_INTEGER) throw new WireError('varint too large');
    if ((byte & 0x80) === 0) return { value, next: pos + i + 1 };
    scale *= 128;
  }
  throw new WireError('varint longer than 10 bytes');
}

export function encodeVarint(value: number): Buffer {
  if (!Number.isSafeInteger(value) || value < 0) throw new WireError(`cannot encode ${value} as a varint`);
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

/** One top-level field: where it starts, where its value starts and where it ends. */
export interface Field {
  number: number;
  wireType: number;
  /** First byte of the tag. */
  start: number;
  /** First byte of the value (for LEN: after the length prefix). */
  valueStart: number;
  /** One past the last byte of the value. */
  end: number;
}

/** Every top-level field of a message, in order; throws on anything truncated or malformed. */
export function fields(buf: Uint8Array): Field[] {
  const out: Field[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const start = pos;
    const tag = readVarint(buf, pos);
    const number = Math.floor(tag.value / 8);
    const wireType = tag.value % 8;
    if (number < 1 || number > 536_870_911) throw new WireError(`bad field number ${number}`);
    pos = tag.next;
    let valueStart = pos;
    switch (wireType) {
      case WIRE_VARINT:
        pos = readVarint(buf, pos).next;
        break;
      case WIRE_I64:
        pos += 8;
        break;
      case WIRE_I32:
        pos += 4;
        break;
      case WIRE_LEN: {
        const len = readVarint(buf, pos);
        valueStart = len.next;
        pos = len.next + len.value;
        break;
      }
      default:
        // Groups (3, 4) are long deprecated and appear in no Temporal message.
        throw new WireError(`unsupported wire type ${wireType}`);
    }
    if (pos > buf.length) throw new WireError(`field ${number} runs past the end`);
    out.push({ number, wireType, start, valueStart, end: pos });
  }
  return out;
}

/** Tag + length + bytes of a length-delimited field. */
export function encodeLenField(number: number, value: Uint8Array): Buffer {
  return Buffer.concat([encodeVarint(number * 8 + WIRE_LEN), encodeVarint(value.length), value]);
}

/**
 * The value of the single length-delimited field `number`; undefined when absent. More than one
 * occurrence is refused: protobuf would take the last, and a gate that checked another one than
 * the server reads would be fooled.
 */
export function getBytesField(buf: Uint8Array, number: number): Buffer | undefined {
  const found = fields(buf).filter((f) => f.number === number);
  if (found.length === 0) return undefined;
  if (found.length > 1) throw new WireError(`field ${number} occurs ${found.length} times`);
  const [f] = found;
  if (f.wireType !== WIRE_LEN) throw new WireError(`field ${number} is not length-delimited`);
  return Buffer.from(buf.subarray(f.valueStart, f.end));
}

/**
 * `buf` with the value of length-delimited field `number` replaced by `map(old)`, every other
 * byte as it was. Unchanged (same buffer) when the field is absent.
 */
export function replaceBytesField(buf: Buffer, number: number, map: (value: Buffer) => Buffer): Buffer {
  const found = fields(buf).filter((f) => f.number === number);
  if (found.length === 0) return buf;
  if (found.length > 1) throw new WireError(`field ${number} occurs ${found.length} times`);
  const [f] = found;
  if (f.wireType !== WIRE_LEN) throw new WireError(`field ${number} is not length-delimited`);
  const value = map(buf.subarray(f.valueStart, f.end));
  return Buffer.concat([buf.subarray(0, f.start), encodeLenField(number, value), buf.subarray(f.end)]);
}
