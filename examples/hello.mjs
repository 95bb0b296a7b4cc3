// The spec's Example 1 (compute.for form 2b) on your private Distributed Computer, as a paid job.
// Run it after `pnpm start`:  node examples/hello.mjs
// (From a program elsewhere: require('/path/to/commune/libs/client') works the same.)
import { init } from '@commune/client';

// scheduler: $COMMUNE_SCHEDULER_URL or http://localhost:4000; bank: $COMMUNE_BANK_URL or http://localhost:4100
const { compute, wallet } = await init();
const paid = !process.env.COMMUNE_NO_BANK;
if (paid) console.log('balance before:', await wallet.balance(), 'DCC');

const job = compute.for(1, 3, function (i) {
  progress('100%');
  return i * 10;
});
job.on('accepted', () => console.log('job accepted:', job.id));
job.on('result', (event) => console.log(`slice ${event.sort} ->`, event.result.result));
// Offer at most 0.001 DCC per slice (0 asks for free computation).
const results = await job.exec(paid ? 0.001 : 0);
console.log('results:    ', results);
console.log('entries:    ', results.entries());
console.log('fromEntries:', results.fromEntries());
console.log('keys:       ', results.keys());
console.log('values:     ', results.values());
if (paid) {
  await new Promise((resolve) => setTimeout(resolve, 1500)); // payments settle in batches
  console.log('balance after: ', await wallet.balance(), 'DCC');
}
process.exit(0);
