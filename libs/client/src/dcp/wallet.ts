import path from 'node:path';
import { CommuneError, ErrorCode } from '@commune/protocol';
import { createKeystore, loadKeystore, type KeystoreWallet } from '../keystore.js';
import type { CommuneWallet } from '../wallet.js';

/** The keystore that identifies this program (DESIGN: `default.keystore` pays, `id.keystore` identifies). */
export const identityKeystoreName = 'id.keystore';

/** The wallet module with dcp-client's `getId()`. */
export interface DcpWallet extends CommuneWallet {
  /**
   * dcp-client's wallet.getId(): the identity keystore, `<home>/id.keystore` (empty passphrase),
   * created on first use as DCP creates `~/.dcp/id.keystore`. Commune's services do not ask for
   * an identity yet: jobs and transfers are signed by the payment account (wallet.get()).
   */
  getId(): Promise<KeystoreWallet>;
}

/** `wallet` plus getId(); the same object is init()'s `wallet` and `require('dcp/wallet')`. */
export function withIdentity(wallet: CommuneWallet): DcpWallet {
  let identity: Promise<KeystoreWallet> | undefined;
  const file = path.join(wallet.home, identityKeystoreName);
  const loadOrCreate = async (): Promise<KeystoreWallet> => {
    try {
      return await loadKeystore(file, '');
    } catch (error) {
      if ((error as CommuneError).code !== ErrorCode.ENOTFOUND) throw error;
    }
    return createKeystore(file, '');
  };
  return {
    ...wallet,
    getId() {
      // Kept once found; a failure is not kept, so the next call tries again.
      identity ??= loadOrCreate().catch((error: unknown) => {
        identity = undefined;
        throw error;
      });
      return identity;
    },
  };
}
