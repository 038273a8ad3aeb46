// The log levels and formats (host/log/logger.ts), apart from the logger so
// that parsing --log-level does not load pino (issue 15: a restart's time to
// its first forwarded frame is spent partly loading modules).
export const LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type Level = (typeof LEVELS)[number];
export type LogFormat = "json" | "text";

export function isLevel(s: unknown): s is Level {
  return typeof s === "string" && (LEVELS as readonly string[]).includes(s);
}
