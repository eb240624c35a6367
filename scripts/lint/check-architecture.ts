import { checkArchitecture } from './architecture.ts';

// `npm run lint` part two: the import graph (cycles, layers); exits non-zero on any violation.
const { output, exitCode } = await checkArchitecture(process.cwd());
process.stdout.write(output);
process.exitCode = exitCode;
