import { Controller, Get, Param, Query, Req } from '@nestjs/common';
import {
  JobIdSchema, OwnerJobsQuerySchema, ResultsPageQuerySchema, type JobInfo, type JobStatus, type OwnerJobs, type ResultsPage,
} from '@commune/protocol';
import { OwnerAuth, type SignedHttpRequest } from '../auth/owner-auth.service.js';
import { JobsService } from './jobs.service.js';

/**
 * REST: job status and paged results, readable with the job id (~100 random bits) as the
 * capability; the owner's queries (job list, job info) need an owner-signed request
 * (protocol OwnerRequestSchema).
 */
@Controller('jobs')
export class JobsController {
  constructor(private readonly jobs: JobsService, private readonly auth: OwnerAuth) {}

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
  async status(@Param('id') id: string): Promise<JobStatus> {
    return this.jobs.status(JobIdSchema.parse(id));
  }

  @Get(':id/results')
  async results(@Param('id') id: string, @Query() query: Record<string, string>): Promise<ResultsPage> {
    const jobId = JobIdSchema.parse(id);
    const { after, limit } = ResultsPageQuerySchema.parse(query);
    return { jobId, ...(await this.jobs.resultsPage(jobId, after, limit)) };
  }
}
