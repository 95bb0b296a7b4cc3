import { randomBytes } from 'node:crypto';
import { link, mkdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { encryptKeystoreJson, Wallet, type HDNodeWallet } from 'ethers';
import { CommuneError, ErrorCode } from '@commune/protocol';

/**
 * Keystores are ethers JSON keystores (Ethereum "Web3 Secret Storage") kept in the Commune home
 * folder, `~/.commune` unless COMMUNE_HOME or init({home}) says otherwise. `default.keystore`
 * pays for (and owns) jobs; it is created on first use.
 */
export const defaultKeystoreName = 'default.keystore';

/**
 * scrypt cost of the keystores this SDK creates. ethers' default (2**17) costs about a second
 * of CPU to decrypt; the default keystore has an empty passphrase, so that cost protects
 * nothing and every program start would pay it. 2**14 decrypts in ~60 ms. Keystores that guard
 * real money should be made with a passphrase and a high N by the wallet tools, not this.
 */
export const devKeystoreScryptN = 2 ** 14;

export type KeystoreWallet = Wallet | HDNodeWallet;

/** The home folder: explicit, else COMMUNE_HOME, else ~/.commune; a leading ~ is expanded. */
export function resolveHome(home?: string): string {
  const chosen = home ?? process.env.COMMUNE_HOME ?? path.join(homedir(), '.commune');
  const expanded = chosen === '~' || chosen.startsWith('~/') ? path.join(homedir(), chosen.slice(1)) : chosen;
  return path.resolve(expanded);
}

/**
 * Where a keystore named by the user lives: an existing path as given, else `<home>/<name>`,
 * else `<home>/<name>.keystore` (so `load('id')` finds `~/.commune/id.keystore`).
 */
export async function locateKeystore(home: string, name: string): Promise<string> {
  const candidates = [path.resolve(name)];
  if (!path.isAbsolute(name)) candidates.push(path.join(home, name), path.join(home, `${name}.keystore`));
  for (const candidate of candidates) {
    try {
      if ((await stat(candidate)).isFile()) return candidate;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
  throw new CommuneError(ErrorCode.ENOTFOUND, `no keystore at ${candidates.join(' or ')}`);
}

/** Decrypts a JSON keystore file. */
export async function loadKeystore(file: string, passphrase = ''): Promise<KeystoreWallet> {
  let json: string;
  try {
    json = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new CommuneError(ErrorCode.ENOTFOUND, `no keystore at ${file}`);
    throw error;
  }
  try {
    return await Wallet.fromEncryptedJson(json, passphrase);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new CommuneError(ErrorCode.EPERM, `cannot decrypt keystore ${file}: ${reason}`);
  }
}

/**
 * Writes a new random key to `file` (mode 0600) and returns it. Never replaces an existing
 * file: when two programs create the same keystore at once, the loser loads the winner's, so
 * both sign with one key.
 */
export async function createKeystore(file: string, passphrase = '', scryptN = devKeystoreScryptN): Promise<KeystoreWallet> {
  const created = Wallet.createRandom();
  const json = await encryptKeystoreJson({ address: created.address, privateKey: created.privateKey }, passphrase, { scrypt: { N: scryptN } });
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  // Written whole under a private name, then linked into place: readers never see half a
  // keystore, and link() (unlike rename()) fails instead of replacing a file that appeared.
  const temporary = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(temporary, json, { mode: 0o600, flag: 'wx' });
  try {
    await link(temporary, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return loadKeystore(file, passphrase);
    throw error;
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
  return new Wallet(created.privateKey);
}

/** `<home>/default.keystore`, created (empty passphrase) when it does not exist. */
export async function loadOrCreateDefaultKeystore(home: string): Promise<KeystoreWallet> {
  const file = path.join(home, defaultKeystoreName);
  try {
    return await loadKeystore(file, '');
  } catch (error) {
    if ((error as CommuneError).code !== ErrorCode.ENOTFOUND) throw error;
  }
  return createKeystore(file, '');
}
