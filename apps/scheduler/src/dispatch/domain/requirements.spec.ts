import { meetsRequirements } from './requirements.js';

const v8Worker = {
  engine: { es7: true, es2019: true, es2022: true, v8: true, spidermonkey: false },
  environment: { fdlibm: true, offscreenCanvas: false },
};

describe('meetsRequirements', () => {
  it('accepts empty or missing requirements', () => {
    expect(meetsRequirements({}, v8Worker)).toBe(true);
    expect(meetsRequirements(undefined, {})).toBe(true);
    expect(meetsRequirements(null, {})).toBe(true);
  });

  it('true needs the capability present, false needs it absent', () => {
    expect(meetsRequirements({ engine: { es2019: true, spidermonkey: false } }, v8Worker)).toBe(true);
    expect(meetsRequirements({ engine: { spidermonkey: true } }, v8Worker)).toBe(false);
    expect(meetsRequirements({ engine: { v8: false } }, v8Worker)).toBe(false);
    expect(meetsRequirements({ environment: { fdlibm: true, offscreenCanvas: false } }, v8Worker)).toBe(true);
    expect(meetsRequirements({ environment: { offscreenCanvas: true } }, v8Worker)).toBe(false);
  });

  it('treats missing capabilities and missing branches as absent', () => {
    expect(meetsRequirements({ gpu: true }, v8Worker)).toBe(false);
    expect(meetsRequirements({ gpu: false }, v8Worker)).toBe(true);
    expect(meetsRequirements({ details: { offscreenCanvas: { bigTexture4096: true } } }, v8Worker)).toBe(false);
    expect(meetsRequirements({ details: { offscreenCanvas: { bigTexture4096: false } } }, v8Worker)).toBe(true);
    expect(meetsRequirements({ engine: { es7: true } }, {})).toBe(false);
  });

  it('a true leaf accepts any truthy capability, including an object', () => {
    expect(meetsRequirements({ engine: true }, v8Worker)).toBe(true);
    expect(meetsRequirements({ engine: false }, v8Worker)).toBe(false);
  });

  it('non-boolean leaves must equal', () => {
    expect(meetsRequirements({ machine: { arch: 'x64' } }, { machine: { arch: 'x64' } })).toBe(true);
    expect(meetsRequirements({ machine: { arch: 'x64' } }, { machine: { arch: 'arm64' } })).toBe(false);
    expect(meetsRequirements({ cores: 4 }, { cores: 4 })).toBe(true);
    expect(meetsRequirements({ cores: 4 }, { cores: 8 })).toBe(false);
    expect(meetsRequirements({ list: [1, 2] }, { list: [1, 2] })).toBe(true);
    expect(meetsRequirements({ tag: null }, {})).toBe(false);
  });

  it('does not read inherited properties', () => {
    expect(meetsRequirements({ toString: true }, {})).toBe(false);
  });
});
