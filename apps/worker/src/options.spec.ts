import { describe, expect, it } from '@jest/globals';
import { parseCommandLine, type OptionSources } from './options.js';

const address = '0x52908400098527886e0f7030069857d2e4169ee7';
const checksummed = '0x52908400098527886E0F7030069857D2E4169EE7';

function sources(overrides: Partial<OptionSources> & { files?: Record<string, string> } = {}): OptionSources {
  const files = overrides.files ?? {};
  return {
    env: overrides.env ?? {},
    defaultSandboxes: overrides.defaultSandboxes ?? 6,
    readFile:
      overrides.readFile ??
      ((path) => {
        if (!(path in files)) throw new Error(`ENOENT: no such file, open '${path}'`);
        return files[path];
      }),
  };
}

function run(argv: string[], from = sources()) {
  const parsed = parseCommandLine(argv, from);
  if (parsed.kind !== 'run') throw new Error(`expected options, got ${JSON.stringify(parsed)}`);
  return parsed.options;
}

function error(argv: string[], from = sources()): string {
  const parsed = parseCommandLine(argv, from);
  if (parsed.kind !== 'error') throw new Error(`expected an error, got ${JSON.stringify(parsed)}`);
  return parsed.message;
}

describe(parseCommandLine.name, () => {
  it('uses the defaults: localhost:4000, the available parallelism, no earnings, any wage, no bank, human logs', () => {
    expect(run([])).toEqual({ schedulers: ['http://localhost:4000'], sandboxes: 6, minWage: '0', quiet: false, json: false, computeGroups: [], publicGroup: true });
  });

  it('takes the scheduler from COMMUNE_SCHEDULER_URL when no flag or file names one', () => {
    expect(run([], sources({ env: { COMMUNE_SCHEDULER_URL: 'https://scheduler.example/' } })).schedulers).toEqual(['https://scheduler.example']);
    expect(run([], sources({ env: { COMMUNE_SCHEDULER_URL: '' } })).schedulers).toEqual(['http://localhost:4000']);
  });

  it('takes several scheduler URLs: comma-separated or repeated flags, a comma-separated COMMUNE_SCHEDULER_URL, a list in the config file', () => {
    expect(run(['--scheduler', 'http://a:4000, http://b:4000/']).schedulers).toEqual(['http://a:4000', 'http://b:4000']);
    expect(run(['--scheduler', 'http://a:4000', '--scheduler', 'wss://b.example']).schedulers).toEqual(['http://a:4000', 'wss://b.example']);
    expect(run([], sources({ env: { COMMUNE_SCHEDULER_URL: 'http://a:4000,http://b:4000' } })).schedulers).toEqual(['http://a:4000', 'http://b:4000']);
    const from = sources({ files: { 'list.json': JSON.stringify({ scheduler: ['http://a:4000', 'http://b:4000,http://c:4000'] }), 'text.json': JSON.stringify({ scheduler: 'http://a:4000,http://b:4000' }) } });
    expect(run(['--config', 'list.json'], from).schedulers).toEqual(['http://a:4000', 'http://b:4000', 'http://c:4000']);
    expect(run(['--config', 'text.json'], from).schedulers).toEqual(['http://a:4000', 'http://b:4000']);
    // Duplicates are dropped (after normalising), the order is kept.
    expect(run(['--scheduler', 'http://b:4000,http://a:4000/,http://b:4000/']).schedulers).toEqual(['http://b:4000', 'http://a:4000']);
  });

  it('refuses scheduler lists with an empty or bad entry, too many URLs, or too long ones, naming the entry and where it came from', () => {
    expect(error(['--scheduler', 'http://a:4000,,http://b:4000'])).toMatch(/^--scheduler http:\/\/a:4000,,http:\/\/b:4000: entry 2 is empty$/);
    expect(error(['--scheduler', 'http://a:4000,ftp://b'])).toMatch(/entry 2 "ftp:\/\/b": must be an http\(s\) or ws\(s\) URL/);
    expect(error([], sources({ env: { COMMUNE_SCHEDULER_URL: 'http://a:4000,nope' } }))).toMatch(/^COMMUNE_SCHEDULER_URL http:\/\/a:4000,nope: entry 2 "nope"/);
    const seventeen = Array.from({ length: 17 }, (_, i) => `http://s${i}:4000`).join(',');
    expect(error(['--scheduler', seventeen])).toMatch(/17 URLs; at most 16/);
    expect(error(['--scheduler', `http://a:4000/${'x'.repeat(2100)}`])).toMatch(/longer than 2048 characters/);
    // A huge value is refused before it is split, and the message quotes only its start.
    const huge = error([], sources({ env: { COMMUNE_SCHEDULER_URL: 'x'.repeat(1_000_000) } }));
    expect(huge).toMatch(/at most 16 URLs of 2048 characters/);
    expect(huge.length).toBeLessThan(400);
    const from = sources({ files: { 'empty.json': JSON.stringify({ scheduler: [] }), 'bad.json': JSON.stringify({ scheduler: ['http://a:4000', 7] }) } });
    expect(error(['--config', 'empty.json'], from)).toMatch(/empty.json: scheduler/);
    expect(error(['--config', 'bad.json'], from)).toMatch(/bad.json: scheduler/);
  });

  it('reads every flag', () => {
    expect(
      run(['--scheduler', 'http://10.0.0.1:4000', '--sandboxes', '3', '--earnings', address, '--min-wage', '0.0001', '--bank', 'http://10.0.0.1:4100/', '--quiet', '--json']),
    ).toEqual({
      schedulers: ['http://10.0.0.1:4000'],
      sandboxes: 3,
      earnings: checksummed,
      minWage: '0.0001',
      bank: 'http://10.0.0.1:4100',
      quiet: true,
      json: true,
      computeGroups: [],
      publicGroup: true,
    });
  });

  it('joins compute groups from --join KEY:SECRET (repeatable) and the config file, and leaves the public group on request', () => {
    const from = sources({ files: { 'g.json': JSON.stringify({ computeGroups: [{ joinKey: 'lab', joinSecret: 'a:b' }], publicGroup: true }) } });
    expect(run(['--config', 'g.json', '--join', 'gpu-farm:s3cret:with:colons', '--no-public-group'], from)).toMatchObject({
      computeGroups: [{ joinKey: 'lab', joinSecret: 'a:b' }, { joinKey: 'gpu-farm', joinSecret: 's3cret:with:colons' }],
      publicGroup: false,
    });
    expect(error(['--join', 'nosecret'])).toMatch(/--join nosecret:\.\.\.: must be KEY:SECRET/);
    expect(error(['--join', 'Bad Key:x'])).toMatch(/join key is 1 to 63 lower-case/);
    expect(error(['--no-public-group'])).toMatch(/needs at least one --join/);
  });

  it('normalises --min-wage to a DCC decimal string with at most 18 decimals', () => {
    expect(run(['--min-wage', '0.50']).minWage).toBe('0.5');
    expect(run(['--min-wage', '007']).minWage).toBe('7');
    expect(run(['--min-wage', '0.000000000000000001']).minWage).toBe('0.000000000000000001');
    expect(run(['--min-wage', '0.000']).minWage).toBe('0');
  });

  it('takes the bank from COMMUNE_BANK_URL when no flag or file names one', () => {
    expect(run([], sources({ env: { COMMUNE_BANK_URL: 'https://bank.example/' } })).bank).toBe('https://bank.example');
    expect(run([], sources({ env: { COMMUNE_BANK_URL: '' } })).bank).toBeUndefined();
    expect(run(['--bank', 'http://flag:4100'], sources({ env: { COMMUNE_BANK_URL: 'https://bank.example/' } })).bank).toBe('http://flag:4100');
  });

  it('answers -h and --help with the usage text', () => {
    for (const flag of ['-h', '--help']) {
      const parsed = parseCommandLine([flag], sources());
      expect(parsed.kind).toBe('help');
      if (parsed.kind === 'help') expect(parsed.text).toMatch(/--sandboxes N .*default: 6/);
    }
  });

  it('reads a config file, which flags override and which overrides the environment', () => {
    const file = JSON.stringify({ scheduler: 'http://file:4000', sandboxes: 4, earnings: address, minWage: '0.002', bank: 'http://file:4100', quiet: true });
    const from = sources({ files: { '/etc/worker.json': file }, env: { COMMUNE_SCHEDULER_URL: 'http://env:4000', COMMUNE_BANK_URL: 'http://env:4100' } });
    expect(run(['--config', '/etc/worker.json'], from)).toEqual({
      schedulers: ['http://file:4000'],
      sandboxes: 4,
      earnings: checksummed,
      minWage: '0.002',
      bank: 'http://file:4100',
      quiet: true,
      json: false,
      computeGroups: [],
      publicGroup: true,
    });
    expect(run(['--config', '/etc/worker.json', '--sandboxes', '1', '--scheduler', 'http://flag:4000', '--min-wage', '1', '--bank', 'https://flag:4100'], from)).toMatchObject({
      schedulers: ['http://flag:4000'],
      sandboxes: 1,
      minWage: '1',
      bank: 'https://flag:4100',
    });
  });

  it('takes minWage in a config file as a string or a JSON number', () => {
    const from = sources({ files: { 'n.json': JSON.stringify({ minWage: 0.25 }), 's.json': JSON.stringify({ minWage: '1.10' }) } });
    expect(run(['--config', 'n.json'], from).minWage).toBe('0.25');
    expect(run(['--config', 's.json'], from).minWage).toBe('1.1');
  });

  it.each([
    [['--sandboxes', '0'], /--sandboxes 0/],
    [['--sandboxes', 'two'], /--sandboxes two/],
    [['--sandboxes', '1.5'], /--sandboxes 1.5/],
    [['--sandboxes', '5000'], /from 1 to 1024/],
    [['--earnings', '0x1234'], /not an Ethereum address/],
    [['--min-wage=-1'], /--min-wage -1: must be an amount of DCC/],
    [['--min-wage', 'lots'], /--min-wage lots/],
    [['--min-wage', '1e-3'], /--min-wage 1e-3/],
    [['--min-wage', '.5'], /--min-wage .5/],
    [['--min-wage', '0.0000000000000000001'], /at most 18 decimals/],
    [['--bank', 'ftp://bank'], /--bank ftp:\/\/bank: must be an http\(s\) URL/],
    [['--bank', 'nowhere'], /--bank nowhere/],
    [['--scheduler', 'ftp://x'], /http\(s\) or ws\(s\)/],
    [['--scheduler', 'not a url'], /--scheduler/],
    [['--bogus'], /Unknown option '--bogus'/],
    [['positional'], /positional/i],
  ])('refuses %j', (argv, message) => {
    expect(error(argv)).toMatch(message);
  });

  it('refuses config files that are missing, not JSON, or have unknown or bad keys', () => {
    const from = sources({
      files: {
        'broken.json': '{ nope',
        'typo.json': JSON.stringify({ sandbox: 2 }),
        'bad.json': JSON.stringify({ sandboxes: -1, earnings: 'x' }),
        'money.json': JSON.stringify({ minWage: -1, bank: 'ws://bank' }),
      },
    });
    expect(error(['--config', 'missing.json'], from)).toMatch(/cannot read config file missing.json/);
    expect(error(['--config', 'broken.json'], from)).toMatch(/broken.json is not JSON/);
    expect(error(['--config', 'typo.json'], from)).toMatch(/typo.json.*sandbox/);
    expect(error(['--config', 'bad.json'], from)).toMatch(/sandboxes.*earnings|earnings.*sandboxes/);
    expect(error(['--config', 'money.json'], from)).toMatch(/minWage.*bank/);
  });
});
