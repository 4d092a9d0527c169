import { sweepStaleScratch } from './src/datapath/index.ts';
console.log(sweepStaleScratch());
