/**
 * Vitest setup file (unit project): every fast-check property runs from one known seed, so a run never depends
 * on luck. FC_SEED from the environment (.ci/run exports a fixed one and prints it; scripts/soak-fuzz.sh
 * rotates it), else DEFAULT_FC_SEED. A failing property prints its seed and path, as fast-check does.
 * FC_NUM_RUNS (soak runs) raises the runs of the properties that do not set their own.
 */
import fc from 'fast-check';

export const DEFAULT_FC_SEED = 20261207;

const raw = process.env.FC_SEED;
const seed = raw === undefined || raw === '' ? DEFAULT_FC_SEED : Number(raw);
if (!Number.isSafeInteger(seed)) throw new Error(`FC_SEED must be an integer, got ${JSON.stringify(raw)}`);
const runs = process.env.FC_NUM_RUNS;
const numRuns = runs === undefined || runs === '' ? undefined : Number(runs);
if (numRuns !== undefined && (!Number.isSafeInteger(numRuns) || numRuns < 1)) throw new Error(`FC_NUM_RUNS must be a positive integer, got ${JSON.stringify(runs)}`);
fc.configureGlobal({ ...fc.readConfigureGlobal(), seed, ...(numRuns === undefined ? {} : { numRuns }) });
