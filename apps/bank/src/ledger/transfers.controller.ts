import { Body, Controller, HttpStatus, Post, Res } from '@nestjs/common';
import { ApiBody, ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import { SignedTransferSchema, TransferReceiptSchema, type TransferReceipt } from '@commune/protocol';
import { errorSchema, openApiSchema } from '../http/openapi.js';
import { LedgerService } from './ledger.service.js';

/** Signed transfers between accounts (the payer signs; no service token). */
@ApiTags('transfers')
@Controller('transfers')
export class TransfersController {
  constructor(private readonly ledger: LedgerService) {}

  @Post()
  @ApiOperation({
    summary: 'Transfer signed by its payer',
    description:
      'The signature is `signRequest(wallet, SignedKind.transfer, transfer)` (@commune/protocol): EIP-191 over the Commune signed-request ' +
      'text of kind `transfer` and the canonical JSON of `transfer` exactly as sent, made by `from` (so it is never valid as a withdrawal). ' +
      'Unknown fields are refused. `idempotencyKey` is the nonce: ' +
      'the same signed transfer again answers 200 with the first receipt; another transfer under the same key is EREPLAY. ' +
      '`expiresAt` (epoch ms) must lie in the future, at most MAX_TRANSFER_LIFETIME_MS ahead.',
  })
  @ApiBody({ schema: openApiSchema(SignedTransferSchema) })
  @ApiResponse({ status: 201, description: 'transferred', schema: openApiSchema(TransferReceiptSchema) })
  @ApiResponse({ status: 200, description: 'a retry: the first receipt', schema: openApiSchema(TransferReceiptSchema) })
  @ApiResponse({ status: 400, description: 'EINVAL, ETOODEEP', schema: errorSchema })
  @ApiResponse({ status: 401, description: 'EBADSIGNATURE, EEXPIRED', schema: errorSchema })
  @ApiResponse({ status: 402, description: 'ENOFUNDS', schema: errorSchema })
  @ApiResponse({ status: 409, description: 'EREPLAY', schema: errorSchema })
  async transfer(@Body() body: unknown, @Res({ passthrough: true }) response: { status(code: number): unknown }): Promise<TransferReceipt> {
    const { value, created } = await this.ledger.submitSignedTransfer(body);
    response.status(created ? HttpStatus.CREATED : HttpStatus.OK);
    return value;
  }
}
