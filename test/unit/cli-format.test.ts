import { describe, expect, it } from 'vitest';
import { durationBetween, formatDuration, formatInterval, formatTable, formatTimestamp } from '../../cli/format.ts';

describe('Function: formatDuration', () => {
  it.each([
    [0, '0ms'],
    [850, '850ms'],
    [1000, '1.0s'],
    [12_345, '12.3s'],
    [59_999, '59.9s'],
    [60_000, '1m00s'],
    [245_000, '4m05s'],
    [3_600_000, '1h00m'],
    [3_720_000, '1h02m'],
  ])('formats %d ms as %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it('shows "-" for a negative or unknown duration rather than a nonsense number', () => {
    expect(formatDuration(-5)).toBe('-');
    expect(formatDuration(Number.NaN)).toBe('-');
  });
});

describe('Function: durationBetween', () => {
  const now = Date.parse('2025-01-01T00:01:00Z');
  it('measures a closed interval', () => {
    expect(durationBetween('2025-01-01T00:00:00Z', '2025-01-01T00:00:30Z', now)).toBe(30_000);
  });
  it('measures an open interval until now', () => {
    expect(durationBetween('2025-01-01T00:00:00Z', undefined, now)).toBe(60_000);
    expect(formatInterval('2025-01-01T00:00:00Z', undefined, now)).toBe('1m00s');
  });
  it('is undefined when never started', () => {
    expect(durationBetween(undefined, undefined, now)).toBeUndefined();
    expect(formatInterval(undefined, undefined, now)).toBe('-');
  });
});

describe('Function: formatTimestamp', () => {
  it('prints UTC seconds without the T and zone', () => {
    expect(formatTimestamp('2025-03-04T05:06:07.890Z')).toBe('2025-03-04 05:06:07');
    expect(formatTimestamp(undefined)).toBe('-');
  });
});

describe('Function: formatTable', () => {
  it('aligns columns under their headers and trims trailing spaces', () => {
    const lines = formatTable(
      ['ID', 'STATUS', 'ERROR'],
      [
        ['d-1', 'SUCCEEDED', ''],
        ['d-22', 'FAILED', 'Ctd.StepFailed'],
      ],
    );
    expect(lines).toEqual(['ID    STATUS     ERROR', 'd-1   SUCCEEDED', 'd-22  FAILED     Ctd.StepFailed']);
  });
});
