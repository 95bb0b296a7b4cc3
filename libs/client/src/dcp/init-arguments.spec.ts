import { ErrorCode } from '@commune/protocol';
import { initOptionsOf } from './init-arguments.js';

const codeMatching = (code: string) => expect.objectContaining({ code });

describe('init() argument forms (Commune and dcp-client 5.6.1)', () => {
  const url = new URL('http://scheduler.test:4000/');

  it("takes nothing, a URL string, a URL and an array of them as the scheduler (dcp-client's forms 1 and 2)", () => {
    expect(initOptionsOf(undefined, undefined)).toEqual({});
    expect(initOptionsOf('http://a:4000', undefined)).toEqual({ scheduler: 'http://a:4000' });
    expect(initOptionsOf(url, undefined)).toEqual({ scheduler: url });
    expect(initOptionsOf(['http://a:4000', url], undefined)).toEqual({ scheduler: ['http://a:4000', url] });
  });

  it('takes a dcpConfig-shaped object: { scheduler: { location }, bank: { location } }', () => {
    expect(initOptionsOf({ scheduler: { location: url }, bank: { location: 'http://bank.test:4100' } }, undefined)).toMatchObject({
      scheduler: url,
      bank: 'http://bank.test:4100',
    });
  });

  it("takes dcp-client's options form 3: `scheduler` wins over `dcpConfig`, DCP's loader options change nothing", () => {
    const fragment = { scheduler: { location: 'http://from-config:1/' }, bank: { location: 'http://bank-from-config:2/' } };
    const settings = initOptionsOf({ dcpConfig: fragment, parseArgv: false, programName: 'x', autoUpdate: false, reportErrors: false } as never, undefined);
    expect(settings).toMatchObject({ scheduler: 'http://from-config:1/', bank: 'http://bank-from-config:2/' });
    expect(settings).not.toHaveProperty('dcpConfig');
    expect(initOptionsOf({ scheduler: 'http://given:3/', dcpConfig: fragment } as never, undefined)).toMatchObject({ scheduler: 'http://given:3/' });
  });

  it("takes dcp-client's deprecated form 4, init(dcpConfig, options), the options' scheduler first", () => {
    expect(initOptionsOf({ scheduler: { location: url } }, { home: '/h' })).toMatchObject({ scheduler: url, home: '/h' });
    expect(initOptionsOf({ scheduler: { location: url } }, { scheduler: 'http://other:1/' })).toMatchObject({ scheduler: 'http://other:1/' });
  });

  it('a dcpConfig node without location names nothing; a scheduler option without one is refused (EINVAL)', () => {
    expect(initOptionsOf({ dcpConfig: { scheduler: { configLocation: false } } } as never, undefined).scheduler).toBeUndefined();
    expect(() => initOptionsOf({ scheduler: {} } as never, undefined)).toThrow(codeMatching(ErrorCode.EINVAL));
    expect(() => initOptionsOf({ scheduler: { location: 42 } } as never, undefined)).toThrow(codeMatching(ErrorCode.EINVAL));
    expect(() => initOptionsOf('http://a:1/', { home: '/h' })).toThrow(codeMatching(ErrorCode.EINVAL));
    expect(() => initOptionsOf(42, undefined)).toThrow(codeMatching(ErrorCode.EINVAL));
  });
});
