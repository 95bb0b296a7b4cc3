import { describe, expect, it } from '@jest/globals';
import { createLogger, type LogLevel } from './log.js';

function capture(options: Parameters<typeof createLogger>[0] = {}) {
  const lines: Array<{ line: string; level: LogLevel }> = [];
  const log = createLogger({ ...options, now: () => new Date('2026-01-02T03:04:05.006Z'), write: (line, level) => lines.push({ line, level }) });
  return { log, lines };
}

describe(createLogger.name, () => {
  it('writes human lines with time and level', () => {
    const { log, lines } = capture();
    log.info('connected', { workerId: 'w_1' });
    log.error('boom');
    expect(lines).toEqual([
      { line: '2026-01-02T03:04:05.006Z INFO  connected', level: 'info' },
      { line: '2026-01-02T03:04:05.006Z ERROR boom', level: 'error' },
    ]);
  });

  it('writes one JSON object per line with --json, fields included', () => {
    const { log, lines } = capture({ json: true });
    log.warn('slow', { taskId: 't_1', count: 2n });
    expect(JSON.parse(lines[0].line)).toEqual({ time: '2026-01-02T03:04:05.006Z', level: 'warn', msg: 'slow', taskId: 't_1', count: '2' });
  });

  it('keeps only warnings and errors with --quiet, and debug only when verbose', () => {
    const quiet = capture({ quiet: true });
    quiet.log.debug('d');
    quiet.log.info('i');
    quiet.log.warn('w');
    quiet.log.error('e');
    expect(quiet.lines.map((entry) => entry.level)).toEqual(['warn', 'error']);
    const verbose = capture({ verbose: true });
    verbose.log.debug('d');
    expect(verbose.lines).toHaveLength(1);
    const normal = capture();
    normal.log.debug('d');
    expect(normal.lines).toHaveLength(0);
  });
});
