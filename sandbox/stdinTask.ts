import type { Readable } from 'node:stream';
import type { Wakes } from './wakes.ts';

/**
 * A local runner's stdin: its task's ids and token as the first JSON line, then one line per wake
 * (content ignored). Resolves with the task, or undefined when the input ends without one (the
 * engine went away); the input ending after the task changes nothing.
 */
export function readTask(input: Readable, wakes: Wakes): Promise<Record<string, string> | undefined> {
  return new Promise((resolve, reject) => {
    let text = '';
    let handedOver = false;
    const wakeOnEachLine = (chunk: string) => {
      for (let at = chunk.indexOf('\n'); at >= 0; at = chunk.indexOf('\n', at + 1)) wakes.wake();
    };
    const take = (line: string) => {
      handedOver = true;
      try {
        resolve(parseTask(line));
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    };
    input.setEncoding('utf8');
    input.on('data', (chunk: string) => {
      // After the task nothing is kept: only the line ends count.
      if (handedOver) return wakeOnEachLine(chunk);
      text += chunk;
      const end = text.indexOf('\n');
      if (end < 0) return;
      const rest = text.slice(end + 1);
      take(text.slice(0, end));
      wakeOnEachLine(rest);
    });
    input.on('end', () => {
      if (handedOver) return;
      if (!text.trim()) resolve(undefined);
      else take(text);
    });
    // A pipe error before the task is the engine gone; after it, nothing is read from stdin that matters.
    input.on('error', (e) => (handedOver ? undefined : reject(e)));
  });
}

function parseTask(text: string): Record<string, string> {
  const task: unknown = JSON.parse(text);
  if (typeof task !== 'object' || task === null || Array.isArray(task)) throw new Error('the task on stdin is not an object');
  return Object.fromEntries(Object.entries(task).map(([k, v]) => [k, String(v)]));
}
