// Structured JSON logs (pino), one logger per process, named after it.
import { pino } from "pino";

export type Logger = pino.Logger;

export function createLogger(name: string, level: string = "info"): Logger {
  return pino({
    name,
    level,
    base: { name, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: ["*.authorization", "*.apiKey", "*.secret", "req.headers.authorization"], censor: "[redacted]" },
  });
}
