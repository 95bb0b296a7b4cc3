import { Namespaces } from '@commune/protocol';

/** A location in dcpConfig: DCP programs read `.location.href`, `.location.hostname`, ... */
export interface DcpLocation {
  location: URL;
}

/**
 * `globalThis.dcpConfig` / `require('dcp/dcp-config')` after init(): the configuration as DCP
 * programs read it (dcp-client builds the same paths from its config files and the scheduler's
 * /etc/dcp-config.kvin), with Commune's values. Commune's scheduler is one service, so each of
 * DCP's scheduler services is the scheduler URL with the socket.io namespace that does that job.
 */
export interface DcpConfig {
  scheduler: {
    /** The scheduler (the first of init's URLs). */
    location: URL;
    services: {
      /** Deploys: the `/client` namespace. */
      jobSubmit: DcpLocation;
      /** Job events to clients: the `/client` namespace. */
      eventRouter: DcpLocation;
      /** Leases to workers: the `/worker` namespace. */
      taskDistributor: DcpLocation;
      /** Results from workers: the `/worker` namespace. */
      resultSubmitter: DcpLocation;
    };
  };
  bank: {
    /** The bank (init's `bank`). */
    location: URL;
    services: {
      /** Balances and transfers (wallet.balance / transfer / history): the bank itself. */
      bankTeller: DcpLocation;
    };
  };
}

export function makeDcpConfig(scheduler: URL, bank: URL): DcpConfig {
  const at = (path: string) => ({ location: new URL(path, scheduler) });
  return {
    scheduler: {
      location: new URL(scheduler.href),
      services: {
        jobSubmit: at(Namespaces.client),
        eventRouter: at(Namespaces.client),
        taskDistributor: at(Namespaces.worker),
        resultSubmitter: at(Namespaces.worker),
      },
    },
    bank: {
      location: new URL(bank.href),
      services: { bankTeller: { location: new URL(bank.href) } },
    },
  };
}
