import { Wallet } from 'ethers';
import { ApplianceSpecSchema, hashOf, SignedKind, signRequest, type ApplianceSpec } from '@commune/protocol';

const signPublication = (wallet: Wallet, spec: ApplianceSpec) => signRequest(wallet, SignedKind.appliance, spec);
import {
  checkJobWork, checkNamespace, checkNewVersion, checkPublication, checkVersion, highestSatisfying, parseVersionSelector,
} from './appliance-rules.js';

const publisher = new Wallet('0x' + '11'.repeat(32));
const stranger = new Wallet('0x' + '22'.repeat(32));
const now = 1_800_000_000_000;
const limits = { maxWorkBytes: 4096, maxSignatureLifetimeMs: 600_000 };

function specOf(fields: Partial<ApplianceSpec> = {}): ApplianceSpec {
  return ApplianceSpecSchema.parse({
    name: 'math-util',
    version: '1.0.0',
    publisher: publisher.address,
    metadata: { description: 'squares and names' },
    functions: [
      { name: 'square', work: '(i) => i * i' },
      { name: 'name', work: '(i) => "n" + i', estimation: '() => ({ cpuHours: 1 })', sliceProfile: { cpuHours: 0.001 } },
    ],
    nonce: 'n_abcdefgh',
    issuedAt: now,
    expiresAt: now + 60_000,
    ...fields,
  });
}

const published = ['0.9.0', '1.0.0', '1.2.0', '1.2.5', '1.10.1', '2.0.0', '2.1.0-beta.1'].map((version) => ({ version, versionId: `id-${version}` }));

describe('appliance version ranges', () => {
  it.each([
    ['^1.0.0', '1.10.1'],
    ['~1.2', '1.2.5'],
    ['>=1 <2', '1.10.1'],
    ['*', '2.0.0'],
    ['', '2.0.0'],
    ['1.0.0', '1.0.0'],
    ['1.2.x', '1.2.5'],
    ['^2.1.0-beta.0', '2.1.0-beta.1'],
  ])('%j resolves to the highest satisfying version, %s', (range, expected) => {
    const selector = parseVersionSelector(range);
    expect(selector.kind).toBe('range');
    expect(highestSatisfying(published, (selector as { range: string }).range)?.version).toBe(expected);
  });

  it('a range no published version satisfies resolves to nothing', () => {
    expect(highestSatisfying(published, '^3.0.0')).toBeNull();
    expect(highestSatisfying([], '*')).toBeNull();
  });

  it('"#" + a version id selects exactly that version (hex, case-insensitive)', () => {
    const id = 'ab'.repeat(32);
    expect(parseVersionSelector('#' + id)).toEqual({ kind: 'versionId', versionId: id });
    expect(parseVersionSelector('#' + id.toUpperCase())).toEqual({ kind: 'versionId', versionId: id });
  });

  it.each(['#1234', '#' + 'zz'.repeat(32), 'latest', 'not a range', '^^1'])('%j is EINVAL', (selector) => {
    expect(() => parseVersionSelector(selector)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });

  it('versions are strict semantic versions as semver prints them', () => {
    expect(checkVersion('1.0.0')).toBe('1.0.0');
    expect(checkVersion('2.1.0-beta.1')).toBe('2.1.0-beta.1');
    for (const bad of ['1.0', '1', 'v1.0.0', '=1.0.0', '1.0.0+build.5', '^1.0.0', 'one']) {
      expect(() => checkVersion(bad)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    }
  });
});

describe('appliance name reservation', () => {
  it('a new name may be taken by anyone', () => {
    expect(() => checkNamespace('math-util', null, publisher.address)).not.toThrow();
  });
  it('a reserved name takes new versions only from the key that reserved it (ENAMESPACE otherwise)', () => {
    expect(() => checkNamespace('math-util', publisher.address, publisher.address)).not.toThrow();
    expect(() => checkNamespace('math-util', publisher.address, stranger.address)).toThrow(expect.objectContaining({ code: 'ENAMESPACE' }));
  });
  it('a version number is used once (EEXIST); the same signed publication sent again is not a second use', () => {
    expect(checkNewVersion('math-util', '1.0.0', null, '0xaa')).toBe('new');
    expect(checkNewVersion('math-util', '1.0.0', { signature: '0xaa' }, '0xaa')).toBe('resent');
    expect(() => checkNewVersion('math-util', '1.0.0', { signature: '0xaa' }, '0xbb')).toThrow(expect.objectContaining({ code: 'EEXIST' }));
  });
});

describe(checkPublication.name, () => {
  it('accepts a publication signed by its publisher; the version id is the hash of what was signed', async () => {
    const spec = specOf();
    const signature = await signPublication(publisher, spec);
    const checked = await checkPublication(spec, signature, now, limits);
    expect(checked.versionId).toBe(hashOf(spec).slice(2));
    expect(checked.versionId).toMatch(/^[0-9a-f]{64}$/);
    expect(checked.receipt).toBe(hashOf({ versionId: checked.versionId, signature }));
    expect(checked.functions.map((fn) => [fn.name, fn.workHash])).toEqual([['square', hashOf('(i) => i * i')], ['name', hashOf('(i) => "n" + i')]]);
  });

  it('refuses a signature by another key, over other content, or of another kind (EBADSIGNATURE)', async () => {
    const spec = specOf();
    await expect(checkPublication(spec, await signRequest(publisher, SignedKind.deploy, spec), now, limits)).rejects.toMatchObject({ code: 'EBADSIGNATURE' });
    await expect(checkPublication(spec, '0x1234', now, limits)).rejects.toMatchObject({ code: 'EBADSIGNATURE' });
    const byStranger = await signPublication(stranger, spec);
    await expect(checkPublication(spec, byStranger, now, limits)).rejects.toMatchObject({ code: 'EBADSIGNATURE' });
    const signature = await signPublication(publisher, spec);
    const tampered = { ...spec, functions: [{ name: 'square', work: '(i) => i * i * i' }] };
    await expect(checkPublication(tampered, signature, now, limits)).rejects.toMatchObject({ code: 'EBADSIGNATURE' });
  });

  it('refuses an expired publication or one whose expiry is too far ahead (EEXPIRED)', async () => {
    for (const expiresAt of [now - 1, now + limits.maxSignatureLifetimeMs + 1]) {
      const spec = specOf({ expiresAt });
      const signature = await signPublication(publisher, spec);
      await expect(checkPublication(spec, signature, now, limits)).rejects.toMatchObject({ code: 'EEXPIRED' });
    }
  });

  it('refuses an invalid version or a function defined twice (EINVAL)', async () => {
    const badVersion = specOf({ version: '1.0' });
    await expect(signPublication(publisher, badVersion).then((signature) => checkPublication(badVersion, signature, now, limits))).rejects.toMatchObject({ code: 'EINVAL' });
    const twice = specOf({ functions: [{ name: 'square', work: '(i) => i' }, { name: 'square', work: '(i) => i * i' }] });
    await expect(signPublication(publisher, twice).then((signature) => checkPublication(twice, signature, now, limits))).rejects.toMatchObject({ code: 'EINVAL' });
  });

  it('refuses functions whose sources together exceed maxWorkBytes (EWORKTOOBIG), estimation functions included', async () => {
    const half = `(i) => ${'1'.repeat(2040)}`;
    const fits = specOf({ functions: [{ name: 'a', work: half }, { name: 'b', work: half }] });
    expect((await checkPublication(fits, await signPublication(publisher, fits), now, limits)).functions).toHaveLength(2);
    const over = specOf({ functions: [{ name: 'a', work: half }, { name: 'b', work: half, estimation: '() => ({ cpuHours: 2 })' }] });
    await expect(signPublication(publisher, over).then((signature) => checkPublication(over, signature, now, limits))).rejects.toMatchObject({ code: 'EWORKTOOBIG' });
  });
});

describe(checkJobWork.name, () => {
  const ref = { versionId: 'ab'.repeat(32), function: 'square' };
  it('accepts exactly the published source of the named function', () => {
    expect(() => checkJobWork('(i) => i * i', { workHash: hashOf('(i) => i * i') }, ref)).not.toThrow();
  });
  it('refuses other work (EINVAL) and an unknown function (ENOTFOUND)', () => {
    expect(() => checkJobWork('(i) => i + i', { workHash: hashOf('(i) => i * i') }, ref)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(() => checkJobWork('(i) => i * i', null, ref)).toThrow(expect.objectContaining({ code: 'ENOTFOUND' }));
  });
});
