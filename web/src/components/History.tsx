// What happened to the balance: the payments and the ledger, newest first,
// a page at a time. Reloaded when the balance changes.

import { type ReactNode, useEffect, useState } from 'react';

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

interface SectionProps<T> {
  id: string;
  title: string;
  /** Shown when the first page cannot be loaded. */
  failed: string;
  empty: string;
  more: string;
  columns: string[];
  pages: ReturnType<typeof usePages<T>>;
  row: (item: T) => ReactNode;
}

/** One list of the history: its table, "nothing yet", its error, "More". */
function Section<T>({ id, title, failed, empty, more, columns, pages, row }: SectionProps<T>) {
  return (
    <section aria-labelledby={id}>
      <h2 id={id}>{title}</h2>
      {pages.error && <p role="alert">{failed}</p>}
      {pages.rows.length === 0 && !pages.error ? (
        <p className="empty">{empty}</p>
      ) : (
        <table aria-labelledby={id}>
          <thead>
            <tr>
              {columns.map((column) => (
                <th key={column} scope="col">
                  {column}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>{pages.rows.map(row)}</tbody>
        </table>
      )}
      {pages.next && (
        <button type="button" onClick={() => void pages.more()}>
          {more}
        </button>
      )}
    </section>
  );
}

export function History() {
  const { balanceCents, updatedAt } = useBalanceStore();
  const reloadOn = `${balanceCents}-${updatedAt}`;
  const payments = usePages(loadPayments, reloadOn);
  const ledger = usePages(loadEntries, reloadOn);

  return (
    <div className="history">
      <Section
        id="payments-heading"
        title="Payments"
        failed="The payments could not be loaded."
        empty="No payments yet."
        more="More payments"
        columns={['Date', 'Amount', 'Status']}
        pages={payments}
        row={(payment) => (
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
        )}
      />
      <Section
        id="ledger-heading"
        title="Credits history"
        failed="The credits history could not be loaded."
        empty="Nothing yet."
        more="More entries"
        columns={['Date', 'What', 'Amount', 'Balance after']}
        pages={ledger}
        row={(entry) => (
          <tr key={entry.entry_id}>
            <td>{when(entry.created_at)}</td>
            <td>
              {ENTRY_KIND[entry.kind] ?? entry.kind}
              {entry.reason && <span className="reason"> — {entry.reason}</span>}
            </td>
            <td>{formatSignedCents(entry.amount_cents, entry.currency)}</td>
            <td>{formatCents(entry.balance_after_cents, entry.currency)}</td>
          </tr>
        )}
      />
    </div>
  );
}
