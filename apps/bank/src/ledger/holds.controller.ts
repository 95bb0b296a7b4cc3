import { Body, Controller, Get, HttpCode, HttpStatus, Param, Post, Res, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOkResponse, ApiOperation, ApiParam, ApiResponse, ApiTags } from '@nestjs/swagger';
import {
  CreateHoldSchema,
  HoldSchema,
  IncreaseHoldSchema,
  PostPaymentsReplySchema,
  PostPaymentsSchema,
  ReleaseHoldSchema,
  type Hold,
  type PostPaymentsReply,
} from '@commune/protocol';
import { errorSchema, openApiSchema, SERVICE_AUTH } from '../http/openapi.js';
import { ServiceTokenGuard } from '../http/service-token.guard.js';
import { LedgerService } from './ledger.service.js';

const holdSchema = openApiSchema(HoldSchema);

/** Escrow for jobs: service endpoints (the scheduler), behind the service token. */
@ApiTags('holds (service)')
@ApiBearerAuth(SERVICE_AUTH)
@ApiResponse({ status: 401, description: 'EUNAUTHORIZED: no or wrong service token', schema: errorSchema })
@UseGuards(ServiceTokenGuard)
@Controller('holds')
export class HoldsController {
  constructor(private readonly ledger: LedgerService) {}

  @Post()
  @ApiOperation({ summary: "Reserve an amount of an account's available balance for a job (escrow)" })
  @ApiBody({ schema: openApiSchema(CreateHoldSchema) })
  @ApiResponse({ status: 201, description: 'held', schema: holdSchema })
  @ApiResponse({ status: 200, description: 'a retry: the first outcome', schema: holdSchema })
  @ApiResponse({ status: 402, description: 'ENOFUNDS', schema: errorSchema })
  @ApiResponse({ status: 409, description: 'EKEYREUSED', schema: errorSchema })
  async create(@Body() body: unknown, @Res({ passthrough: true }) response: { status(code: number): unknown }): Promise<Hold> {
    const { value, created } = await this.ledger.createHold(CreateHoldSchema.parse(body));
    response.status(created ? HttpStatus.CREATED : HttpStatus.OK);
    return value;
  }

  @Get(':id')
  @ApiOperation({ summary: 'A hold: amount reserved, posted, remaining, status' })
  @ApiParam({ name: 'id' })
  @ApiOkResponse({ schema: holdSchema })
  @ApiResponse({ status: 404, description: 'ENOTFOUND', schema: errorSchema })
  async get(@Param('id') id: string): Promise<Hold> {
    return this.ledger.getHold(id);
  }

  @Post(':id/increase')
  @HttpCode(HttpStatus.OK)
  @ApiOperation({ summary: 'Reserve more (and optionally move the expiry)' })
  @ApiParam({ name: 'id' })
  @ApiBody({ schema: openApiSchema(IncreaseHoldSchema) })
  @ApiOkResponse({ schema: holdSchema })
  @ApiResponse({ status: 402, description: 'ENOFUNDS', schema: errorSchema })
  @ApiResponse({ status: 404, description: 'ENOTFOUND', schema: errorSchema })
  @ApiResponse({ status: 409, description: 'EHOLDCLOSED, EKEYREUSED', schema: errorSchema })
  async increase(@Param('id') id: string, @Body() body: unknown): Promise<Hold> {
    return this.ledger.increaseHold(id, IncreaseHoldSchema.parse(body));
  }

  @Post(':id/payments')
  @HttpCode(HttpStatus.OK)
  @ApiOperation({
    summary: 'Pay workers out of the hold',
    description:
      'Each payment key (job + slice) is paid at most once, ever; keys paid before count as alreadyPaid. feePerPayment goes to the ' +
      'fee account for each payment made. A batch that needs more than remains is refused whole (ENOFUNDS) and changes nothing.',
  })
  @ApiParam({ name: 'id' })
  @ApiBody({ schema: openApiSchema(PostPaymentsSchema) })
  @ApiOkResponse({ schema: openApiSchema(PostPaymentsReplySchema) })
  @ApiResponse({ status: 402, description: 'ENOFUNDS', schema: errorSchema })
  @ApiResponse({ status: 404, description: 'ENOTFOUND', schema: errorSchema })
  @ApiResponse({ status: 409, description: 'EHOLDCLOSED, EKEYREUSED', schema: errorSchema })
  async payments(@Param('id') id: string, @Body() body: unknown): Promise<PostPaymentsReply> {
    return this.ledger.postPayments(id, PostPaymentsSchema.parse(body));
  }

  @Post(':id/release')
  @HttpCode(HttpStatus.OK)
  @ApiOperation({ summary: 'Return what remains to the account; a hold resolves once (EHOLDCLOSED after)' })
  @ApiParam({ name: 'id' })
  @ApiBody({ schema: openApiSchema(ReleaseHoldSchema) })
  @ApiOkResponse({ schema: holdSchema })
  @ApiResponse({ status: 404, description: 'ENOTFOUND', schema: errorSchema })
  @ApiResponse({ status: 409, description: 'EHOLDCLOSED, EKEYREUSED', schema: errorSchema })
  async release(@Param('id') id: string, @Body() body: unknown): Promise<Hold> {
    const { idempotencyKey } = ReleaseHoldSchema.parse(body);
    return this.ledger.releaseHold({ idempotencyKey, holdId: id });
  }
}
