// What happened to the balance: the payments and the ledger, newest first,
// a page at a time. Reloaded when the balance changes.

import { useEffect, useState } from 'react';

import { formatCents, formatSignedCents } from '../money';
import {
  type LedgerEntry,
  type Payment,
  listLedger,
  listPayments,
} from '../services/paymentsService';
import { useBalanceStore } from '../store/balanceStore';

const PAGE = 10;

const PAYMENT_STATUS: Record<string, string> = {
  succeeded: 'Paid',
  processing: 'Processing',
  requires_payment_method: 'Not paid',
  requires_confirmation: 'Not paid',
  requires_action: 'Waiting for authentication',
  requires_capture: 'Authorized',
  canceled: 'Canceled',
};

const ENTRY_KIND: Record<string, string> = {
  top_up: 'Top-up',
  refund: 'Refund',
  refund_reversal: 'Refund reversed',
  dispute: 'Dispute',
  dispute_reversal: 'Dispute won',
  spend: 'Spent',
  spend_reversal: 'Spend reversed',
  adjustment: 'Adjustment',
};

function when(timestamp: string | null | undefined): string {
  return timestamp ? new Date(timestamp).toLocaleString() : '';
}

interface Pages<T> {
  rows: T[];
  next: string | null;
  error: boolean;
}

interface Page<T> {
  rows: T[];
  next_cursor?: string | null;
}

function usePages<T>(load: (cursor: string | null, limit: number) => Promise<Page<T>>, reloadOn: unknown) {
  const [pages, setPages] = useState<Pages<T>>({ rows: [], next: null, error: false });

  useEffect(() => {
    let current = true;
    load(null, PAGE).then(
      (page) => current && setPages({ rows: page.rows, next: page.next_cursor ?? null, error: false }),
      () => current && setPages((held) => ({ ...held, error: true })),
    );
    return () => {
      current = false;
    };
  }, [load, reloadOn]);

  const more = async () => {
    if (!pages.next) return;
    try {
      const page = await load(pages.next, PAGE);
      setPages((current) => ({ rows: [...current.rows, ...page.rows], next: page.next_cursor ?? null, error: false }));
    } catch {
      setPages((current) => ({ ...current, error: true }));
    }
  };
  return { ...pages, more };
}

const loadPayments = async (cursor: string | null, limit: number): Promise<Page<Payment>> => {
  const page = await listPayments(cursor, limit);
  return { rows: page.payments, next_cursor: page.next_cursor };
};
const loadEntries = async (cursor: string | null, limit: number): Promise<Page<LedgerEntry>> => {
  const page = await listLedger(cursor, limit);
  return { rows: page.entries, next_cursor: page.next_cursor };
};

export function History() {
  const { balanceCents, updatedAt } = useBalanceStore();
  const reloadOn = `${balanceCents}-${updatedAt}`;
  const payments = usePages(loadPayments, reloadOn);
  const ledger = usePages(loadEntries, reloadOn);

  return (
    <div className="history">
      <section aria-labelledby="payments-heading">
        <h2 id="payments-heading">Payments</h2>
        {payments.error && <p role="alert">The payments could not be loaded.</p>}
        {payments.rows.length === 0 && !payments.error ? (
          <p className="empty">No payments yet.</p>
        ) : (
          <table aria-labelledby="payments-heading">
            <thead>
              <tr>
                <th scope="col">Date</th>
                <th scope="col">Amount</th>
                <th scope="col">Status</th>
              </tr>
            </thead>
            <tbody>
              {payments.rows.map((payment) => (
                <tr key={payment.intent_id} data-intent-id={payment.intent_id}>
                  <td>{when(payment.created_at)}</td>
                  <td>{formatCents(payment.amount_cents, payment.currency)}</td>
                  <td>
                    {PAYMENT_STATUS[payment.status] ?? payment.status}
                    {payment.amount_refunded_cents > 0 && ` (refunded ${formatCents(payment.amount_refunded_cents)})`}
                    {payment.failure_message && payment.status !== 'succeeded' && (
                      <span className="failure"> — {payment.failure_message}</span>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        {payments.next && (
          <button type="button" onClick={() => void payments.more()}>
            More payments
          </button>
        )}
      </section>

      <section aria-labelledby="ledger-heading">
        <h2 id="ledger-heading">Credits history</h2>
        {ledger.error && <p role="alert">The credits history could not be loaded.</p>}
        {ledger.rows.length === 0 && !ledger.error ? (
          <p className="empty">Nothing yet.</p>
        ) : (
          <table aria-labelledby="ledger-heading">
            <thead>
              <tr>
                <th scope="col">Date</th>
                <th scope="col">What</th>
                <th scope="col">Amount</th>
                <th scope="col">Balance after</th>
              </tr>
            </thead>
            <tbody>
              {ledger.rows.map((entry) => (
                <tr key={entry.entry_id}>
                  <td>{when(entry.created_at)}</td>
                  <td>
                    {ENTRY_KIND[entry.kind] ?? entry.kind}
                    {entry.reason && <span className="reason"> — {entry.reason}</span>}
                  </td>
                  <td>{formatSignedCents(entry.amount_cents, entry.currency)}</td>
                  <td>{formatCents(entry.balance_after_cents, entry.currency)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        {ledger.next && (
          <button type="button" onClick={() => void ledger.more()}>
            More entries
          </button>
        )}
      </section>
    </div>
  );
}
