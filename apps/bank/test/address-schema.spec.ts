import { getAddress, isAddress, Wallet } from 'ethers';
import { z } from 'zod';
import { AddressSchema } from '@commune/protocol';

/** The protocol's AddressSchema as it was written before (check with isAddress, then getAddress): the behaviour to keep. */
const Reference = z
  .string()
  .refine((text) => isAddress(text), { message: 'not an Ethereum address' })
  .transform((text) => getAddress(text));

const outcome = (schema: z.ZodType, input: unknown): string => {
  const result = schema.safeParse(input);
  return JSON.stringify(result.success ? { data: result.data } : { issues: result.error.issues });
};

describe('AddressSchema (one getAddress per value)', () => {
  it('accepts, normalises and refuses exactly as isAddress-then-getAddress did, issues included', () => {
    const inputs: unknown[] = ['', 'nope', '0x', 5, null, undefined, {}, ['0x'], 'XE65GB6LDNXYOFTX0NSV3FUWKOWIXAMJK36'];
    for (let i = 0; i < 50; i++) {
      const address = Wallet.createRandom().address;
      const flipped = address.replace(/[a-f]/, (c) => c.toUpperCase()); // a bad checksum (when there is a letter to flip)
      inputs.push(address, address.toLowerCase(), '0x' + address.slice(2).toUpperCase(), flipped, address.slice(0, 41), address + '0', ` ${address}`);
    }
    for (const input of inputs) expect(outcome(AddressSchema, input)).toBe(outcome(Reference, input));
    const Pair = z.object({ from: AddressSchema, to: AddressSchema }).strict();
    const ReferencePair = z.object({ from: Reference, to: Reference }).strict();
    for (const input of [{ from: 'x', to: 'y' }, { from: Wallet.createRandom().address.toLowerCase(), to: 1 }, { from: 'x', extra: 1 }]) {
      expect(outcome(Pair, input)).toBe(outcome(ReferencePair, input));
    }
  });
});
