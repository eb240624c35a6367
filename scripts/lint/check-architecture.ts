import { format } from 'dependency-cruiser';
import { cruiseArchitecture } from './architecture.ts';

// `npm run lint` part two: the import graph (cycles, layers); exits non-zero on any violation.
const { output, exitCode } = await format(await cruiseArchitecture(process.cwd()), { outputType: 'err' });
process.stdout.write(String(output));
process.exitCode = exitCode;
