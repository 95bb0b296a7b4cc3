/**
 * The worker's log: one human line per event, or one JSON object per line with --json (for
 * journald, syslog shippers and log aggregators). --quiet keeps warnings and errors only.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

export interface LoggerOptions {
  json?: boolean;
  quiet?: boolean;
  /** Also print debug lines. */
  verbose?: boolean;
  /** Where lines go; defaults: JSON and info to stdout, human warnings and errors to stderr. */
  write?: (line: string, level: LogLevel) => void;
  now?: () => Date;
}

const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export function createLogger(options: LoggerOptions = {}): Logger {
  const json = options.json ?? false;
  const minimum = options.quiet ? rank.warn : options.verbose ? rank.debug : rank.info;
  const now = options.now ?? (() => new Date());
  const write =
    options.write ??
    ((line: string, level: LogLevel) => {
      const stream = !json && rank[level] >= rank.warn ? process.stderr : process.stdout;
      stream.write(line + '\n');
    });

  function log(level: LogLevel, message: string, fields?: LogFields): void {
    if (rank[level] < minimum) return;
    const time = now();
    if (json) {
      write(JSON.stringify({ time: time.toISOString(), level, msg: message, ...fields }, jsonReplacer), level);
    } else {
      write(`${time.toISOString()} ${level.toUpperCase().padEnd(5)} ${message}`, level);
    }
  }

  return {
    debug: (message, fields) => log('debug', message, fields),
    info: (message, fields) => log('info', message, fields),
    warn: (message, fields) => log('warn', message, fields),
    error: (message, fields) => log('error', message, fields),
  };
}

function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Error) return { name: value.name, message: value.message };
  return value;
}
