import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { withDiagrams } from '../core/lifecycle/diagram.ts';
import { LIFECYCLE_DIAGRAMS } from '../core/lifecycle/diagrams.ts';

/**
 * Rewrites the lifecycle diagrams of docs/ARCHITECTURE.md from core/lifecycle.
 * `tsx scripts/lifecycle-diagrams.ts` writes them; `--check` exits 1 when the doc is stale.
 */
const DOC = fileURLToPath(new URL('../docs/ARCHITECTURE.md', import.meta.url));

const current = await readFile(DOC, 'utf8');
const generated = withDiagrams(current, LIFECYCLE_DIAGRAMS);
if (process.argv.includes('--check')) {
  if (generated !== current) {
    console.error('docs/ARCHITECTURE.md: the lifecycle diagrams differ from core/lifecycle; run `npx tsx scripts/lifecycle-diagrams.ts`');
    process.exit(1);
  }
} else if (generated !== current) {
  await writeFile(DOC, generated);
  console.log('docs/ARCHITECTURE.md: lifecycle diagrams rewritten');
}
