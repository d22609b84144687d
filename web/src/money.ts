// Money on the page: integer cents in, text out; never floating point.

/** 123456 → "$1,234.56"; -250 → "−$2.50". */
export function formatCents(cents: number, currency = 'usd'): string {
  if (!Number.isSafeInteger(cents)) return '—';
  const negative = cents < 0;
  const abs = Math.abs(cents);
  const dollars = Math.floor(abs / 100).toLocaleString('en-US');
  const rest = String(abs % 100).padStart(2, '0');
  const symbol = currency.toLowerCase() === 'usd' ? '$' : `${currency.toUpperCase()} `;
  return `${negative ? '−' : ''}${symbol}${dollars}.${rest}`;
}

/** A signed amount, as a ledger shows it: "+$10.00", "−$2.50". */
export function formatSignedCents(cents: number, currency = 'usd'): string {
  return cents > 0 ? `+${formatCents(cents, currency)}` : formatCents(cents, currency);
}
