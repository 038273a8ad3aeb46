// The logging options every daemon command takes (--log-level, --log-format;
// the logger itself is host/log/logger.ts, which knows nothing of the command line).
import { UsageError } from "./args.js";
import { LEVELS, isLevel, type Level, type LogFormat } from "../log/levels.js";

/** Parses --log-level / --log-format (a UsageError for a bad value). */
export function logOptions(v: { "log-level"?: string; "log-format"?: string }, fallback?: { level?: string; format?: string }): { level: Level; format: LogFormat } {
  const level = v["log-level"] ?? fallback?.level ?? process.env.NVEDGE_LOG_LEVEL ?? "info";
  const format = v["log-format"] ?? fallback?.format ?? process.env.NVEDGE_LOG_FORMAT ?? "text";
  if (!isLevel(level)) throw new UsageError(`--log-level ${level}: expected one of ${LEVELS.join(", ")}`);
  if (format !== "json" && format !== "text") throw new UsageError(`--log-format ${format}: expected json or text`);
  return { level, format };
}

/** The option spec fragment every daemon command takes. */
export const LOG_OPTS = { "log-level": { type: "string" }, "log-format": { type: "string" } } as const;
export const LOG_HELP = `  --log-level L       fatal, error, warn, info (default), debug, trace or silent ($NVEDGE_LOG_LEVEL)
  --log-format F      text (default) or json, one record per line ($NVEDGE_LOG_FORMAT)`;
