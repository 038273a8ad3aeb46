// Encoding and decoding of nvo3-hv/1 payloads (PROTOCOL.md §1, §2): JSON in
// UTF-8, size-limited, validated with the ajv schemas. Decoding never throws:
// every fault becomes a ProtocolError carrying the request id when one is usable.
import type { IClientPublishOptions } from "mqtt";
import { ProtocolError } from "./errors.js";
import { OPS, validators, describeAjvError, primaryAjvError, type OpName } from "./schemas.js";
import type { Request } from "./types.js";

export const DEFAULT_MAX_PAYLOAD = 256 * 1024;
const OP_SET = new Set<string>(OPS);

export type Decoded = { ok: true; req: Request } | { ok: false; id: string | null; error: ProtocolError };

/** Best-effort id of an unparseable or oversized payload: only a well-formed id near the start counts. */
export function sniffId(buf: Uint8Array): string | null {
  const head = Buffer.from(buf.buffer, buf.byteOffset, Math.min(256, buf.length)).toString("utf8"); // a view, no copy
  const m = /^\s*\{\s*"id"\s*:\s*"([^"\\]{1,64})"/.exec(head);
  return m ? m[1] : null;
}

/** One strict decoder for every request (decode() without `stream` keeps no state between calls). */
const UTF8 = new TextDecoder("utf-8", { fatal: true });

export type Envelope =
  | { ok: true; id: string; op: string; msg: Record<string, unknown> }
  | { ok: false; id: string | null; error: ProtocolError };

/**
 * The checks every request shares, NVE's and IMA's alike (PROTOCOL.md §1, §2):
 * the size limit (too-large), UTF-8 JSON, an object, an `id` of 1 to 64
 * characters (else answered with id null), and an `op` among `ops`.
 */
export function decodeEnvelope(payload: Uint8Array, maxPayload: number, ops: ReadonlySet<string>,
                               unknownOp: (op: string) => string): Envelope {
  if (payload.length > maxPayload) // PROTOCOL.md §1: larger requests are answered with too-large
    return { ok: false, id: sniffId(payload), error: new ProtocolError("too-large", `payload of ${payload.length} bytes exceeds the maximum of ${maxPayload}`) };
  let msg: unknown;
  try {
    msg = JSON.parse(UTF8.decode(payload));
  } catch (e) {
    return { ok: false, id: sniffId(payload), error: new ProtocolError("bad-request", `not valid UTF-8 JSON: ${(e as Error).message}`) };
  }
  if (typeof msg !== "object" || msg === null || Array.isArray(msg))
    return { ok: false, id: null, error: new ProtocolError("bad-request", "a request must be a JSON object") };
  const o = msg as Record<string, unknown>;
  const id = typeof o.id === "string" && o.id.length >= 1 && o.id.length <= 64 ? o.id : null;
  if (id === null)
    return { ok: false, id: null, error: new ProtocolError("bad-request", '"id" must be a string of 1 to 64 characters', "id") };
  if (typeof o.op !== "string")
    return { ok: false, id, error: new ProtocolError("bad-request", '"op" must be a string', "op") };
  if (!ops.has(o.op))
    return { ok: false, id, error: new ProtocolError("unknown-op", unknownOp(o.op.slice(0, 64)), "op") };
  return { ok: true, id, op: o.op, msg: o };
}

export function decodeRequest(payload: Uint8Array, maxPayload = DEFAULT_MAX_PAYLOAD): Decoded {
  const env = decodeEnvelope(payload, maxPayload, OP_SET, (op) => `unknown op "${op}"`);
  if (!env.ok) return env;
  const { id, msg: o } = env;
  const validate = validators[o.op as OpName];
  if (!validate(o)) {
    const d = describeAjvError(primaryAjvError(validate.errors!));
    return { ok: false, id, error: new ProtocolError("bad-request", `${d.field || "request"}: ${d.message}`, d.field || undefined) };
  }
  return { ok: true, req: o as unknown as Request };
}

/**
 * An answer's JSON text, made with it where that is cheaper than
 * JSON.stringify of the object (the attach and connect answers, issue 15:
 * stringifying their nested `vn` and `profile` was the largest single item
 * of the NVE's JavaScript per attach). The object stays the answer; its
 * text, when present, is exactly JSON.stringify's of it (the service sends
 * it instead: answerText). A symbol key: JSON.stringify, Object.keys and
 * deep comparisons do not see it.
 */
export const ANSWER_TEXT: unique symbol = Symbol("nvedge.answerText");

/**
 * A reply value's members as JSON text, without the braces (what
 * JSON.stringify(value) holds between them): the core puts the answer's
 * `id` and `ok` before them (okAnswer).
 */
export const MEMBERS_TEXT: unique symbol = Symbol("nvedge.membersText");

/**
 * The success answer `{ id, ok: true, ...value }`, with its text when the
 * value carries its members' (MEMBERS_TEXT): the same bytes as
 * JSON.stringify of the answer, the value's own keys after id and ok.
 */
export function okAnswer(id: string, value: Record<string, unknown>): Record<string, unknown> {
  const members = (value as { [MEMBERS_TEXT]?: string })[MEMBERS_TEXT];
  const rsp: Record<string, unknown> = { id, ok: true, ...value };
  // the value's keys must not replace id or ok (they would move in the text): none of the replies that carry their text has them
  if (members !== undefined && !("id" in value) && !("ok" in value))
    (rsp as { [ANSWER_TEXT]?: string })[ANSWER_TEXT] = `{"id":${JSON.stringify(id)},"ok":true${members ? "," : ""}${members}}`;
  return rsp;
}

/** The answer's JSON text: the one made with it, else JSON.stringify's. */
export function answerText(rsp: Record<string, unknown>): string {
  return (rsp as { [ANSWER_TEXT]?: string })[ANSWER_TEXT] ?? JSON.stringify(rsp);
}

export function encode(msg: unknown): Buffer {
  return Buffer.from(JSON.stringify(msg), "utf8");
}

/** Publish options: QoS 1 always; on MQTT 5 the content type, payload format and echoed correlation data (§1). */
export function publishOptions(protocolVersion: number, retain = false, correlationData?: Buffer): IClientPublishOptions {
  const o: IClientPublishOptions = { qos: 1, retain };
  if (protocolVersion === 5) {
    o.properties = { contentType: "application/json", payloadFormatIndicator: true };
    if (correlationData) o.properties.correlationData = correlationData;
  }
  return o;
}

export function errorResponse(id: string | null, err: ProtocolError): object {
  return { id, ok: false, error: err.toWire() };
}
