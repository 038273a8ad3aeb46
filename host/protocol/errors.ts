// Error codes of PROTOCOL.md §2. A handler throws ProtocolError; the service
// turns it into `{"ok":false,"error":{code,message,field?}}` and changes nothing.
export const ERROR_CODES = [
  "bad-request", "unknown-op", "too-large", "not-authorized", "unknown-vn", "unknown-vnic",
  "not-connected", "tag-conflict", "tag-exhausted", "address-conflict", "limit-exceeded",
  "rate-limited", "hello-required", "internal",
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export class ProtocolError extends Error {
  constructor(public code: ErrorCode, message: string, public field?: string) {
    super(message);
  }
  toWire(): { code: ErrorCode; message: string; field?: string } {
    return this.field === undefined ? { code: this.code, message: this.message } : { code: this.code, message: this.message, field: this.field };
  }
}
