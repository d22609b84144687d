// The payments API as the page uses it: buy credits, sync a payment right
// after Stripe.js confirms it, read the balance and the history, and watch
// the balance live.

import type { components } from '../types/api';
import { ApiError, NetworkError, apiRequest, authorizedFetch, publicRequest } from './api';
import { readEventStream } from './eventStream';

export type Balance = components['schemas']['BalanceBody'];
export type CreatedIntent = components['schemas']['CreatedIntent'];
export type Synced = components['schemas']['SyncedBody'];
export type Payment = components['schemas']['PaymentBody'];
export type LedgerEntry = components['schemas']['LedgerEntryBody'];
export type PaymentsPage = components['schemas']['PaymentsPage'];
export type LedgerPage = components['schemas']['LedgerPage'];
export type ClientConfig = components['schemas']['ClientConfig'];

let clientConfig: Promise<ClientConfig> | null = null;

/**
 * What is on sale (`GET /config`: the tiers, in dollars, and the currency),
 * asked for once per page; a failure is not kept, so the next call asks again.
 */
export function getClientConfig(): Promise<ClientConfig> {
  clientConfig ??= publicRequest<ClientConfig>('/config').catch((failure: unknown) => {
    clientConfig = null;
    throw failure;
  });
  return clientConfig;
}

/** For tests: forget the config asked for. */
export function resetClientConfig(): void {
  clientConfig = null;
}

/**
 * Creates the PaymentIntent of a top-up. `idempotencyKey` is the same for
 * every retry of one attempt, so a retried create answers the first intent.
 */
export function createPaymentIntent(amountUsd: number, idempotencyKey: string): Promise<CreatedIntent> {
  return apiRequest<CreatedIntent>('/payments/create-payment-intent', {
    method: 'POST',
    body: { amount_usd: amountUsd },
    headers: { 'idempotency-key': idempotencyKey },
  });
}

/** Asks the service to read the payment from Stripe now: credited at once if paid. */
export function syncPaymentIntent(intentId: string): Promise<Synced> {
  return apiRequest<Synced>(`/payments/${encodeURIComponent(intentId)}/sync`, { method: 'POST' });
}

export function getBalance(signal?: AbortSignal): Promise<Balance> {
  return apiRequest<Balance>('/balance', { signal });
}

function page(path: string, cursor: string | null, limit: number): string {
  const query = new URLSearchParams({ limit: String(limit) });
  if (cursor) query.set('cursor', cursor);
  return `${path}?${query}`;
}

export function listPayments(cursor: string | null = null, limit = 10): Promise<PaymentsPage> {
  return apiRequest<PaymentsPage>(page('/payments', cursor, limit));
}

export function listLedger(cursor: string | null = null, limit = 10): Promise<LedgerPage> {
  return apiRequest<LedgerPage>(page('/ledger', cursor, limit));
}

/**
 * One `GET /balance/stream`: hands every balance to `onBalance` until the
 * stream ends (the token expired, or the server stopped) or `signal`
 * aborts. Throws ApiError / NetworkError when it cannot be opened.
 */
export async function streamBalance(onBalance: (balance: Balance) => void, signal: AbortSignal): Promise<void> {
  const response = await authorizedFetch('/balance/stream', {
    headers: { accept: 'text/event-stream' },
    signal,
  });
  if (!response.body) throw new NetworkError(new Error('no body'));
  await readEventStream(response.body, (event) => {
    if (event.event !== 'balance') return;
    onBalance(JSON.parse(event.data) as Balance);
  });
}

export { ApiError, NetworkError };
