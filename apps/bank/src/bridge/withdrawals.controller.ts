import { Body, Controller, Get, HttpCode, Inject, Param, Post } from '@nestjs/common';
import { ApiBody, ApiOkResponse, ApiOperation, ApiParam, ApiResponse, ApiTags } from '@nestjs/swagger';
import { SignedWithdrawalSchema, WithdrawalSchema, type Withdrawal } from '@commune/protocol';
import { errorSchema, openApiSchema } from '../http/openapi.js';
import { BRIDGE_SETTINGS, type BridgeSettings } from './bridge-env.js';
import { WithdrawalsService } from './withdrawals.service.js';

/** Where deposits go and how deep they must be: what a wallet page shows before a deposit. */
export interface BridgeInfo {
  enabled: boolean;
  chainId: number | null;
  token: string | null;
  vault: string | null;
  confirmations: number;
}

const bridgeInfoSchema = {
  type: 'object',
  properties: {
    enabled: { type: 'boolean' },
    chainId: { type: 'integer', nullable: true },
    token: { type: 'string', nullable: true, description: 'DCCToken (ERC-20) address' },
    vault: { type: 'string', nullable: true, description: 'BridgeVault address: approve it, then call deposit(amount, ledgerAccount)' },
    confirmations: { type: 'integer', description: 'blocks on top of a deposit before it is credited' },
  },
} as const;

/** The Ethereum bridge's HTTP face: withdrawals out of the ledger, and where deposits go. */
@ApiTags('bridge')
@Controller()
export class WithdrawalsController {
  constructor(
    private readonly withdrawals: WithdrawalsService,
    @Inject(BRIDGE_SETTINGS) private readonly settings: BridgeSettings,
  ) {}

  @Post('withdrawals')
  @HttpCode(202)
  @ApiOperation({
    summary: 'Withdraw DCC from the ledger to an Ethereum address',
    description:
      'Signed by `from` with `signRequest(wallet, SignedKind.withdrawal, withdrawal)` (@commune/protocol: EIP-191 over the signed-request ' +
      'text of kind `withdrawal` and the canonical JSON of `withdrawal` exactly as sent; a transfer signature is never valid here); ' +
      'unknown fields are refused. `idempotencyKey` is the nonce: the same signed request ' +
      'again answers with the first withdrawal, another request under the key is EREPLAY. The amount is held at once; the vault pays ' +
      '`to` in ERC-20 tokens; after BRIDGE_CONFIRMATIONS blocks the withdrawal is `confirmed` (hold burnt). A withdrawal the chain ' +
      'cannot pay becomes `failed` and the hold goes back to `from`.',
  })
  @ApiBody({ schema: openApiSchema(SignedWithdrawalSchema) })
  @ApiResponse({ status: 202, description: 'accepted (or a retry): the withdrawal, usually `pending`', schema: openApiSchema(WithdrawalSchema) })
  @ApiResponse({ status: 400, description: 'EINVAL, ETOODEEP', schema: errorSchema })
  @ApiResponse({ status: 401, description: 'EBADSIGNATURE, EEXPIRED', schema: errorSchema })
  @ApiResponse({ status: 402, description: 'ENOFUNDS', schema: errorSchema })
  @ApiResponse({ status: 409, description: 'EREPLAY', schema: errorSchema })
  @ApiResponse({ status: 503, description: 'ECHAIN: the bridge is not configured', schema: errorSchema })
  request(@Body() body: unknown): Promise<Withdrawal> {
    return this.withdrawals.request(body);
  }

  @Get('withdrawals/:id')
  @ApiOperation({ summary: 'A withdrawal: pending, sent (txHash), confirmed or failed' })
  @ApiParam({ name: 'id', description: 'withdrawalId (bytes32 hex, also the vault’s withdrawal id)' })
  @ApiOkResponse({ schema: openApiSchema(WithdrawalSchema) })
  @ApiResponse({ status: 404, description: 'ENOTFOUND', schema: errorSchema })
  get(@Param('id') id: string): Promise<Withdrawal> {
    return this.withdrawals.get(id);
  }

  @Get('bridge')
  @ApiOperation({ summary: 'The chain, token and vault of this bank, and the confirmations a deposit needs' })
  @ApiOkResponse({ schema: bridgeInfoSchema })
  info(): BridgeInfo {
    const chain = this.settings.enabled ? this.settings.chain : null;
    return { enabled: chain !== null, chainId: chain?.chainId ?? null, token: chain?.token ?? null, vault: chain?.vault ?? null, confirmations: this.settings.confirmations };
  }
}
