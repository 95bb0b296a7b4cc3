import { CommuneError, ErrorCode } from '@commune/protocol';
import { createCompute, type Compute } from './compute.js';
import { SchedulerConnection, type ConnectionOptions, type SchedulerLink } from './connection.js';
import type { JobContext, JobSigner } from './job.js';
import type { LocalExecLimits } from './local-exec.js';
import { loadKeystore, loadOrCreateDefaultKeystore, locateKeystore, resolveHome } from './keystore.js';
import { createWallet } from './wallet.js';
import { makeDcpConfig } from './dcp/dcp-config.js';
import { installDcpModules } from './dcp/dcp-modules.js';
import { initOptionsOf, type DcpConfigFragment, type InitArgument } from './dcp/init-arguments.js';
import { withIdentity, type DcpWallet } from './dcp/wallet.js';

export type { CommuneWallet } from './wallet.js';

export interface InitOptions {
  /**
   * The scheduler's base URL, or several (replicas of one scheduler, as an array or a
   * comma-separated string): the SDK uses one at a time and moves to the next when it dies.
   * Default COMMUNE_SCHEDULER_URL (one URL or a comma-separated list), else DCP_SCHEDULER_LOCATION
   * (dcp-client's variable), else http://localhost:4000. `{ location }` (dcpConfig's shape) too.
   */
  scheduler?: string | URL | ReadonlyArray<string | URL> | { location: string | URL };
  /**
   * The account that owns and pays for jobs: an ethers Wallet (or any signer), or the path of a
   * JSON keystore (a bare name is looked up in the home folder). Default: `<home>/default.keystore`,
   * created on first use.
   */
  keystore?: JobSigner | string;
  /** Passphrase of the `keystore` file; default empty. */
  passphrase?: string;
  /** Where keystores live; default COMMUNE_HOME, else ~/.commune. */
  home?: string;
  /** Timeouts and limits of the scheduler connection. */
  connection?: ConnectionOptions;
  /** The bank's base URL (job.bank, wallet.balance/transfer/history); default COMMUNE_BANK_URL, else http://localhost:4100. `{ location }` too. */
  bank?: string | URL | { location: string | URL };
  /** Limits localExec() applies, to mirror a scheduler configured otherwise (defaults: Limits). */
  localExec?: LocalExecLimits;
  /**
   * dcp-client's option: a dcpConfig fragment, `{ scheduler: { location }, bank: { location } }`
   * (`scheduler` and `bank` above win over it).
   */
  dcpConfig?: DcpConfigFragment;
}

export interface Commune {
  compute: Compute;
  /** The wallet module; also `require('dcp/wallet')`. */
  wallet: DcpWallet;
}

const defaultSchedulerUrl = 'http://localhost:4000';
const defaultBankUrl = 'http://localhost:4100';

function urlOf(what: string, value: string | URL): URL {
  let url: URL;
  try {
    url = new URL(String(value));
  } catch {
    throw new CommuneError(ErrorCode.EINVAL, `the ${what} URL ${JSON.stringify(String(value))} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new CommuneError(ErrorCode.EINVAL, `the ${what} URL must be http: or https:, not ${url.protocol} (${String(value)})`);
  }
  return url;
}

/** The scheduler URLs: each one checked, duplicates dropped, in the order given. */
function schedulerUrlsOf(option: string | URL | ReadonlyArray<string | URL> | undefined): URL[] {
  const given = option === undefined ? (process.env.COMMUNE_SCHEDULER_URL ?? process.env.DCP_SCHEDULER_LOCATION ?? defaultSchedulerUrl) : option;
  const items = Array.isArray(given) ? (given as ReadonlyArray<string | URL>) : [given as string | URL];
  const texts = items.flatMap((item) => (item instanceof URL ? [item.href] : String(item).split(','))).map((text) => text.trim());
  if (texts.length === 0 || texts.some((text) => text === '')) {
    throw new CommuneError(ErrorCode.EINVAL, `the scheduler URLs ${JSON.stringify(items.map(String))} hold an empty entry`);
  }
  const urls: URL[] = [];
  for (const text of texts) {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw new CommuneError(ErrorCode.EINVAL, `the scheduler URL ${JSON.stringify(text)} is not a URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new CommuneError(ErrorCode.EINVAL, `the scheduler URL must be http: or https:, not ${url.protocol} (${text})`);
    }
    if (!urls.some((known) => known.href === url.href)) urls.push(url);
  }
  return urls;
}

/**
 * Starts the SDK: resolves the scheduler URL and the payment account (creating
 * `<home>/default.keystore` if it is the one and does not exist yet). Nothing connects to the
 * scheduler until a job is deployed, so localExec() works without one.
 *
 * Takes dcp-client's argument forms too (a scheduler URL string or URL, an options object with
 * `scheduler` or `dcpConfig`, a dcpConfig-shaped `{ scheduler: { location } }`, and the
 * deprecated `init(dcpConfig, options)`), and does what dcp-client's init() does for DCP
 * programs: sets `globalThis.dcpConfig` and makes `require('dcp/compute')`, `dcp/wallet` and the
 * other `dcp/*` names resolve (see dcp/dcp-modules.ts and README "DCP programs").
 */
export async function init(options?: InitArgument | DcpConfigFragment, dcpOptions?: InitOptions): Promise<Commune> {
  const settings = initOptionsOf(options, dcpOptions);
  const schedulers = schedulerUrlsOf(settings.scheduler as string | URL | ReadonlyArray<string | URL> | undefined);
  const scheduler = schedulers[0];
  const home = resolveHome(settings.home);

  let account: Promise<JobSigner>;
  if (settings.keystore === undefined) account = loadOrCreateDefaultKeystore(home);
  else if (typeof settings.keystore === 'string') {
    const name = settings.keystore;
    account = locateKeystore(home, name).then((file) => loadKeystore(file, settings.passphrase ?? ''));
  } else if (typeof settings.keystore?.signMessage === 'function' && typeof settings.keystore?.getAddress === 'function') {
    account = Promise.resolve(settings.keystore);
  } else {
    throw new CommuneError(ErrorCode.EINVAL, 'init({keystore}) takes an ethers Wallet or the path of a keystore file');
  }
  // Fail init, not the first exec, when the keystore cannot be read.
  await account;

  const bank = urlOf('bank', (settings.bank as string | URL | undefined) ?? process.env.COMMUNE_BANK_URL ?? defaultBankUrl);
  const wallet = withIdentity(createWallet({ home, account, bank, bankLink: { requestTimeoutMs: settings.connection?.requestTimeoutMs } }));

  let link: SchedulerLink | undefined;
  const context: JobContext = {
    scheduler,
    bank,
    localExec: settings.localExec,
    link: () => (link ??= new SchedulerConnection(schedulers, settings.connection)),
    signer: () => account,
  };
  const compute = createCompute(context);
  installDcpModules({ compute, wallet, dcpConfig: makeDcpConfig(scheduler, bank) });
  return { compute, wallet };
}
