// nvo3-hv/1: topics, codec, schemas, error codes (PROTOCOL.md §1–§5).
export * from "./topics.js";
export * from "./errors.js";
export * from "./types.js";
export * from "./codec.js";
export * from "../domain/addr-text.js";
export { OPS, validators, validateResponse, eventValidators, validateNveStatus, requestSchemas, eventSchemas } from "./schemas.js";
