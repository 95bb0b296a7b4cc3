import type { LoggerService } from '@nestjs/common';
import { pino, type Logger } from 'pino';

/** Nest's logger backed by pino: one JSON object per line (DESIGN.md: logs are JSON). */
export class PinoLogger implements LoggerService {
  readonly pino: Logger;
  constructor(service: string, level: string) {
    this.pino = pino({ level, base: { service, pid: process.pid } });
  }
  log(message: unknown, context?: string): void {
    this.pino.info({ context }, String(message));
  }
  error(message: unknown, trace?: string, context?: string): void {
    this.pino.error({ context, trace }, String(message));
  }
  warn(message: unknown, context?: string): void {
    this.pino.warn({ context }, String(message));
  }
  debug(message: unknown, context?: string): void {
    this.pino.debug({ context }, String(message));
  }
  verbose(message: unknown, context?: string): void {
    this.pino.trace({ context }, String(message));
  }
}
