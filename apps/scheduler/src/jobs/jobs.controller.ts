import { Controller, Get, Param, Query, Req } from '@nestjs/common';
import {
  JobIdSchema, OwnerJobsQuerySchema, ResultsPageQuerySchema, type JobInfo, type JobStatus, type OwnerJobs, type ResultsPage,
} from '@commune/protocol';
import { OwnerAuth, type SignedHttpRequest } from '../auth/owner-auth.service.js';
import { ReadAccess } from '../auth/read-access.js';
import { JobsService } from './jobs.service.js';

/**
 * REST: job status and paged results, readable with the job's read token (header
 * x-commune-read-token) or an owner-signed request; the owner's queries (job list, job info) need
 * an owner-signed request (protocol OwnerRequestSchema). The job id alone reads nothing.
 */
@Controller('jobs')
export class JobsController {
  constructor(private readonly jobs: JobsService, private readonly auth: OwnerAuth, private readonly readAccess: ReadAccess) {}

  /** spec compute.status form 2: GET /jobs?owner=0x..&from=ms&to=ms&limit=n, signed by that owner. */
  @Get()
  async list(@Req() request: SignedHttpRequest, @Query() query: Record<string, string>): Promise<OwnerJobs> {
    const signer = await this.auth.authenticate(request);
    const { owner, from, to, limit } = OwnerJobsQuerySchema.parse(query);
    return { owner, jobs: await this.jobs.listByOwner(signer, owner, from, to, limit) };
  }

  /** spec compute.getJobInfo (signed by the owner). */
  @Get(':id/info')
  async info(@Req() request: SignedHttpRequest, @Param('id') id: string): Promise<JobInfo> {
    return this.jobs.info(await this.auth.authenticate(request), JobIdSchema.parse(id));
  }

  @Get(':id')
  async status(@Req() request: SignedHttpRequest, @Param('id') id: string): Promise<JobStatus> {
    const jobId = JobIdSchema.parse(id);
    await this.readAccess.authorizeHttp(jobId, request);
    return this.jobs.status(jobId);
  }

  @Get(':id/results')
  async results(@Req() request: SignedHttpRequest, @Param('id') id: string, @Query() query: Record<string, string>): Promise<ResultsPage> {
    const jobId = JobIdSchema.parse(id);
    const { after, limit } = ResultsPageQuerySchema.parse(query);
    await this.readAccess.authorizeHttp(jobId, request);
    return { jobId, ...(await this.jobs.resultsPage(jobId, after, limit)) };
  }
}
