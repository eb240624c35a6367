import type { Lifecycle } from './types.ts';

/**
 * Mermaid state diagrams drawn from the lifecycle tables, and the marked blocks of a document
 * that hold them: docs/ARCHITECTURE.md shows the data itself, never a hand-drawn copy.
 */

export interface DiagramSpec {
  /** Marker name: the block sits between `<!-- lifecycle:NAME:begin -->` and `<!-- lifecycle:NAME:end -->`. */
  name: string;
  lifecycle: Lifecycle<string>;
  initial: string;
  finals: readonly string[];
}

/** One edge per (from, transition); the label names the transition and who may fire it. */
export function mermaidOf(spec: DiagramSpec): string {
  const lines = ['stateDiagram-v2', `  [*] --> ${spec.initial}`];
  for (const [name, t] of Object.entries(spec.lifecycle)) {
    for (const from of t.from) lines.push(`  ${from} --> ${t.to}: ${name} (${t.by.join(', ')})`);
  }
  for (const final of spec.finals) lines.push(`  ${final} --> [*]`);
  return lines.join('\n');
}

/** The table beside the diagram: when each transition happens. */
export function tableOf(spec: DiagramSpec): string {
  const rows = Object.entries(spec.lifecycle).map(
    ([name, t]) => `| \`${name}\` | ${t.from.join(', ')} | ${t.to} | ${t.by.join(', ')} | ${t.when} |`,
  );
  return ['| transition | from | to | fired by | when |', '|---|---|---|---|---|', ...rows].join('\n');
}

function block(spec: DiagramSpec): string {
  return ['```mermaid', mermaidOf(spec), '```', '', tableOf(spec)].join('\n');
}

const markers = (name: string) => ({ begin: `<!-- lifecycle:${name}:begin -->`, end: `<!-- lifecycle:${name}:end -->` });

/** The document with each marked block replaced by what the data generates; throws when a marker is missing. */
export function withDiagrams(doc: string, specs: readonly DiagramSpec[]): string {
  let out = doc;
  for (const spec of specs) {
    const { begin, end } = markers(spec.name);
    const from = out.indexOf(begin);
    const to = out.indexOf(end);
    if (from < 0 || to < from) throw new Error(`the document has no block ${begin} … ${end}`);
    out = `${out.slice(0, from + begin.length)}\n${block(spec)}\n${out.slice(to)}`;
  }
  return out;
}
