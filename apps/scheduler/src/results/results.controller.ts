import { Controller, Delete, Get, Param, Query, Req } from '@nestjs/common';
import {
  JobIdSchema, SliceInfoQuerySchema, SliceSetQuerySchema, Limits,
  type ResultsDeleteReply, type ResultsListPage, type ResultsPage, type ResultStatsPage, type SliceInfoPage,
} from '@commune/protocol';
import { OwnerAuth, type SignedHttpRequest } from '../auth/owner-auth.service.js';
import { ResultQueries } from './result-queries.service.js';

/**
 * REST for result handles (spec "Result Handles": list, delete, fetch, stat) and
 * compute.getSliceInfo. Every route needs an owner-signed request (protocol OwnerRequestSchema);
 * `slices` is a JSON slice set {sparse: [{start, end, step?}, ...]}, all slices when absent.
 */
@Controller('jobs')
export class ResultsController {
  constructor(private readonly queries: ResultQueries, private readonly auth: OwnerAuth) {}

  /** results.list: GET /jobs/:id/results/list?slices&after&limit -> runs of computed slices. */
  @Get(':id/results/list')
  async list(@Req() request: SignedHttpRequest, @Param('id') id: string, @Query() query: Record<string, string>): Promise<ResultsListPage> {
    const signer = await this.auth.authenticate(request);
    const { slices, after, limit } = SliceSetQuerySchema.parse(query);
    return this.queries.list(signer, JobIdSchema.parse(id), slices, after, Math.min(limit, Limits.maxSliceRunsPerPage));
  }

  /** results.fetch: GET /jobs/:id/results/values?slices&after&limit -> a page of results. */
  @Get(':id/results/values')
  async values(@Req() request: SignedHttpRequest, @Param('id') id: string, @Query() query: Record<string, string>): Promise<ResultsPage> {
    const signer = await this.auth.authenticate(request);
    const { slices, after, limit } = SliceSetQuerySchema.parse(query);
    return this.queries.values(signer, JobIdSchema.parse(id), slices, after, limit);
  }

  /** results.stat: GET /jobs/:id/results/stat?slices&after&limit -> distributedTime, computedTime, payment per slice. */
  @Get(':id/results/stat')
  async stat(@Req() request: SignedHttpRequest, @Param('id') id: string, @Query() query: Record<string, string>): Promise<ResultStatsPage> {
    const signer = await this.auth.authenticate(request);
    const { slices, after, limit } = SliceSetQuerySchema.parse(query);
    return this.queries.stat(signer, JobIdSchema.parse(id), slices, after, limit);
  }

  /** results.delete: DELETE /jobs/:id/results?slices -> how many results were deleted. */
  @Delete(':id/results')
  async delete(@Req() request: SignedHttpRequest, @Param('id') id: string, @Query() query: Record<string, string>): Promise<ResultsDeleteReply> {
    const signer = await this.auth.authenticate(request);
    const { slices } = SliceSetQuerySchema.parse(query);
    return this.queries.delete(signer, JobIdSchema.parse(id), slices);
  }

  /** compute.getSliceInfo: GET /jobs/:id/slices?after&limit -> slices with a result or a failed attempt. */
  @Get(':id/slices')
  async slices(@Req() request: SignedHttpRequest, @Param('id') id: string, @Query() query: Record<string, string>): Promise<SliceInfoPage> {
    const signer = await this.auth.authenticate(request);
    const { after, limit } = SliceInfoQuerySchema.parse(query);
    return this.queries.sliceInfo(signer, JobIdSchema.parse(id), after, limit);
  }
}
