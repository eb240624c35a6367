/** Splits a byte stream into lines for the step log; `flush` emits a last unterminated line. */
export class LineSplitter {
  private rest = '';
  constructor(private readonly emit: (line: string) => void) {}

  push(chunk: Buffer | string): void {
    const text = this.rest + chunk.toString();
    const parts = text.split('\n');
    this.rest = parts.pop() ?? '';
    for (const line of parts) this.emit(line.replace(/\r$/, ''));
  }

  flush(): void {
    if (this.rest !== '') this.emit(this.rest);
    this.rest = '';
  }
}
