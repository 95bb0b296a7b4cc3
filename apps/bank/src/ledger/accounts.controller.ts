import { Controller, Get, Param, Query } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiParam, ApiQuery, ApiResponse, ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import { AccountSchema, AddressSchema, HistoryPageSchema, type Account, type HistoryPage } from '@commune/protocol';
import { errorSchema, openApiSchema } from '../http/openapi.js';
import { DEFAULT_HISTORY_PAGE, LedgerService } from './ledger.service.js';

/** Query of GET /accounts/:address/history: `before` is the previous page's `nextBefore`. */
const AddressParamSchema = z.object({ address: AddressSchema });

export const HistoryQuerySchema = z.object({
  before: z.string().regex(/^\d{1,19}$/, 'an entry id').optional(),
  limit: z.coerce.number().int().min(1).optional(),
});

/** Public reads: balances and history are visible by address, as on a chain. */
@ApiTags('accounts')
@Controller('accounts')
export class AccountsController {
  constructor(private readonly ledger: LedgerService) {}

  @Get(':address')
  @ApiOperation({ summary: 'Available balance of an account (money in holds is not available); 0 for an unused address' })
  @ApiParam({ name: 'address', description: 'Ethereum address (any case)' })
  @ApiOkResponse({ schema: openApiSchema(AccountSchema) })
  @ApiResponse({ status: 400, description: 'EINVAL: not an address', schema: errorSchema })
  async account(@Param('address') address: string): Promise<Account> {
    return this.ledger.account(AddressParamSchema.parse({ address }).address);
  }

  @Get(':address/history')
  @ApiOperation({ summary: 'Ledger entries of an account, newest first, paged with `before` = the previous `nextBefore`' })
  @ApiParam({ name: 'address', description: 'Ethereum address (any case)' })
  @ApiQuery({ name: 'before', required: false, description: 'entry id: only older entries' })
  @ApiQuery({ name: 'limit', required: false, description: `entries per page (default ${DEFAULT_HISTORY_PAGE}, at most MAX_HISTORY_PAGE)` })
  @ApiOkResponse({ schema: openApiSchema(HistoryPageSchema) })
  @ApiResponse({ status: 400, description: 'EINVAL', schema: errorSchema })
  async history(@Param('address') address: string, @Query() query: Record<string, unknown>): Promise<HistoryPage> {
    const { before, limit } = HistoryQuerySchema.parse(query);
    return this.ledger.history(AddressParamSchema.parse({ address }).address, before ?? null, limit);
  }
}
