import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Wallet } from 'ethers';
import { ErrorCode } from '@commune/protocol';
import { init } from './init.js';
import { createKeystore, devKeystoreScryptN, loadKeystore, resolveHome } from './keystore.js';

const codeMatching = (code: string) => expect.objectContaining({ code });

describe('keystores', () => {
  let home: string;

  beforeEach(async () => {
    home = await mkdtemp(path.join(tmpdir(), 'commune-client-'));
  });

  afterEach(async () => {
    await rm(home, { recursive: true, force: true });
  });

  it('init() creates default.keystore in the home folder, readable only by its owner', async () => {
    const { wallet } = await init({ home, scheduler: 'http://localhost:4000' });
    const file = path.join(home, 'default.keystore');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const json = JSON.parse(await readFile(file, 'utf8'));
    expect(json.Crypto.kdfparams.n).toBe(devKeystoreScryptN);
    expect(`0x${json.address}`.toLowerCase()).toBe((await wallet.getAddress()).toLowerCase());
    expect(wallet.home).toBe(home);
    expect(await readdir(home)).toEqual(['default.keystore']);
  });

  it('a second init() reuses the default keystore', async () => {
    const first = await init({ home });
    const second = await init({ home });
    expect(await second.wallet.getAddress()).toBe(await first.wallet.getAddress());
  });

  it('two programs creating the default keystore at once end up with one key', async () => {
    const [a, b] = await Promise.all([init({ home }), init({ home })]);
    const onDisk = await loadKeystore(path.join(home, 'default.keystore'));
    expect(await a.wallet.getAddress()).toBe(onDisk.address);
    expect(await b.wallet.getAddress()).toBe(onDisk.address);
    expect(await readdir(home)).toEqual(['default.keystore']);
  });

  it('COMMUNE_HOME chooses the home folder when init() does not', async () => {
    const saved = process.env.COMMUNE_HOME;
    process.env.COMMUNE_HOME = home;
    try {
      expect(resolveHome()).toBe(home);
      const { wallet } = await init();
      expect(wallet.home).toBe(home);
    } finally {
      if (saved === undefined) delete process.env.COMMUNE_HOME;
      else process.env.COMMUNE_HOME = saved;
    }
  });

  it('init({keystore}) takes a Wallet, and then creates no default keystore', async () => {
    const own = Wallet.createRandom();
    const { wallet } = await init({ home, keystore: own });
    expect(await wallet.getAddress()).toBe(own.address);
    expect(await readdir(home)).toEqual([]);
  });

  it('init({keystore}) takes a keystore path or a name in the home folder, with its passphrase', async () => {
    const made = await createKeystore(path.join(home, 'id.keystore'), 'secret');
    const byName = await init({ home, keystore: 'id', passphrase: 'secret' });
    expect(await byName.wallet.getAddress()).toBe(made.address);
    const byPath = await init({ home, keystore: path.join(home, 'id.keystore'), passphrase: 'secret' });
    expect(await byPath.wallet.getAddress()).toBe(made.address);
  });

  it('wallet.load() decrypts other keystores; a wrong passphrase is EPERM, a missing file ENOTFOUND', async () => {
    const made = await createKeystore(path.join(home, 'id.keystore'), 'secret');
    const { wallet } = await init({ home });
    expect((await wallet.load('id', 'secret')).address).toBe(made.address);
    await expect(wallet.load('id', 'wrong')).rejects.toEqual(codeMatching(ErrorCode.EPERM));
    await expect(wallet.load('nothing-here')).rejects.toEqual(codeMatching(ErrorCode.ENOTFOUND));
  });

  it('init() refuses a scheduler URL that is not http(s)', async () => {
    await expect(init({ home, scheduler: 'ftp://example.com' })).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
    await expect(init({ home, scheduler: 'not a url' })).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
  });
});
