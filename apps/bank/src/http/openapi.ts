import type { INestApplication } from '@nestjs/common';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import type { ApiResponseSchemaHost } from '@nestjs/swagger';
import { z } from 'zod';
import { BankErrorSchema } from '@commune/protocol';

/** An OpenAPI schema object (the type @nestjs/swagger's decorators take). */
export type SchemaObject = ApiResponseSchemaHost['schema'];

/** The OpenAPI description of a zod schema (the wire format as a client sends it). */
export function openApiSchema(schema: z.ZodType): SchemaObject {
  return z.toJSONSchema(schema, { target: 'openapi-3.0', io: 'input', unrepresentable: 'any' }) as SchemaObject;
}

export const errorSchema = openApiSchema(BankErrorSchema);
export const SERVICE_AUTH = 'service-token';

/** Publishes the API description at /docs (UI) and /docs-json. */
export function setupOpenApi(app: INestApplication): void {
  const config = new DocumentBuilder()
    .setTitle('Commune bank')
    .setDescription(
      'The DCC ledger: accounts, signed transfers, holds (escrow) and payments. Amounts are integer strings in the smallest unit ' +
        '(18 decimals). Every state change carries an idempotency key: a retry gets the first outcome. Errors are `{ ok: false, code, message }`.',
    )
    .setVersion('1')
    .addBearerAuth({ type: 'http', scheme: 'bearer', description: 'BANK_SERVICE_TOKEN' }, SERVICE_AUTH)
    .build();
  SwaggerModule.setup('docs', app, () => SwaggerModule.createDocument(app, config));
}
