import { describe, expect, it } from 'vitest';

import { formatCents, formatSignedCents } from './money';

describe('formatCents', () => {
  it('writes integer cents as dollars without floating point', () => {
    expect(formatCents(0)).toBe('$0.00');
    expect(formatCents(5)).toBe('$0.05');
    expect(formatCents(123456)).toBe('$1,234.56');
    expect(formatCents(-250)).toBe('−$2.50');
    expect(formatCents(9_007_199_254_740_991)).toBe('$90,071,992,547,409.91');
    expect(formatCents(0.5)).toBe('—');
  });

  it('signs ledger amounts', () => {
    expect(formatSignedCents(1000)).toBe('+$10.00');
    expect(formatSignedCents(-250)).toBe('−$2.50');
    expect(formatSignedCents(0)).toBe('$0.00');
  });
});
